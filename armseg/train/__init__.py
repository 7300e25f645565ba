"""Training a U-Net on a group: `config` (ini + params), `split` (which slices go where), `slices`
(the group read into memory), `stream` and `augmentation` (batches, random transforms),
`callbacks`, `figures`, and `run` (the stage)."""
