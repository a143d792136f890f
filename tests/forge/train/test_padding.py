"""Less padding: length-grouped batches are asked of the trainer, the padding share is counted, and the loss that
projects only label positions onto the vocabulary is the loss transformers computes."""

import types

import pytest

from forge.train.runner import PaddingCounter, grouping


def test_grouping_and_padding_share():
    from trl import SFTConfig

    assert grouping(SFTConfig, True) in ({"train_sampling_strategy": "group_by_length"}, {"group_by_length": True})
    assert grouping(SFTConfig, False) in ({"train_sampling_strategy": "random"}, {"group_by_length": False})

    import torch

    def collate(examples):
        width = max(len(e["input_ids"]) for e in examples)
        return {"input_ids": torch.zeros(len(examples), width)}

    counter = PaddingCounter()
    counted = counter.wrap(collate)
    counted([{"input_ids": [1] * 10}, {"input_ids": [1] * 6}])  # 20 slots, 4 of them padding
    assert counter.share() == pytest.approx(0.2)


@pytest.mark.slow
def test_label_positions_loss_equals_the_transformers_loss(base_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forge.train.runner import label_positions_loss, label_positions_supported, tokenize

    tok = AutoTokenizer.from_pretrained(base_model_dir)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32),
                           LoraConfig(r=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    assert label_positions_supported(model)
    convs = [[{"role": "user", "content": "hello " * (i * 7 + 3)},
              {"role": "assistant", "content": f"answer number {i} " * (i + 1)}] for i in range(4)]
    rows, _ = tokenize(tok, convs, 512)
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.tensor([r["input_ids"] + [tok.pad_token_id] * (width - len(r["input_ids"])) for r in rows])
    labels = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in rows])
    mask = (ids != -1).long()
    for r, row in zip(mask, rows):
        r[len(row["input_ids"]):] = 0
    trainer = types.SimpleNamespace(model_accepts_loss_kwargs=True, accelerator=types.SimpleNamespace(num_processes=1),
                                    args=types.SimpleNamespace(average_tokens_across_devices=True))
    n = (labels[:, 1:] != -100).sum()
    with torch.no_grad():
        for items in (None, n * 2):  # per batch, and across accumulated batches
            expected = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False,
                             **({"num_items_in_batch": items} if items is not None else {})).loss
            ours = label_positions_loss(trainer, model, {"input_ids": ids, "attention_mask": mask,
                                                         "labels": labels.clone(), "use_cache": False}, items)
            assert float(ours) == pytest.approx(float(expected), rel=1e-5)
