"""The SQL models: reference seeds, the model runner and the models the engine generates."""
