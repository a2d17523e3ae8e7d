"""Test helpers for latent decoding: a logits processor that forces imagery blocks at row-specific steps."""

from transformers import LogitsProcessor


class ForceImageryAt(LogitsProcessor):
    """Force `<|latent_start|>` at generated steps that depend only on the row's own prompt (not its batch position or
    padding), so a row opens the same blocks alone and in a batch."""

    def __init__(self, start_id, pad_token_id, schedule=lambda key: (1 + key % 3, 9 + key % 4)):
        self.start_id, self.pad_token_id, self.schedule = start_id, pad_token_id, schedule
        self.start_len, self.steps = None, None

    def __call__(self, input_ids, scores):
        if self.start_len is None:
            self.start_len = input_ids.shape[1]
            keys = [int(row[row != self.pad_token_id].sum()) for row in input_ids]
            self.steps = [set(self.schedule(k)) for k in keys]
        step = input_ids.shape[1] - self.start_len
        for row, steps in enumerate(self.steps):
            if step in steps:
                scores[row] = -float("inf")
                scores[row, self.start_id] = 0.0
        return scores
