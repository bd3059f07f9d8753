"""A worker: one process serving one model on one device, in the OpenAI wire format."""
