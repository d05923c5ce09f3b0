"""Evidence that outlives the audit: the manifest of digests, the signed attestation, verification."""
