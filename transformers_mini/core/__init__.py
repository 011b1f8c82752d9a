"""What the toy and the language model share: attention with a managed KV cache, the model blocks and
their stream arms (``model``, ``attention``), the torch-free configs (``config``) and the device choice."""
