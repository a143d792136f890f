"""Models: the base model, a finished run made into files other engines load, and the registry of them. Open
`export` first (run → merged GGUF or LoRA adapter GGUF, checked and registered), then `handoff` (HF and PEFT folders
for vLLM, SGLang, TGI, Ollama), `commands` (how each is served), `base_model`, `lora_gguf` and `llama_child`."""
