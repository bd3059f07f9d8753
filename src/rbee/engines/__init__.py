"""Engine adapters: one interface over llama.cpp, a fake engine, and later others."""
