"""
Pack what `benchmarks/cuda_check.py` needs on a GPU machine without AllenNLP: the backbone config,
the model's state dict in fp16 (to fit the transfer limit), exit layers and pooling, and the
tokenized data with labels.

    .venv/bin/python benchmarks/cuda_bundle.py runs/demo/calibrated.tar.gz \
        data/sst2/stsa.binary.test .cuda_bundle
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from allennlp.models.archival import extracted_archive

from sledge.commands.common import load_sledge_archive, read_labelled, tensor_batches


def main(archive_file: str, data_file: str, target: str) -> None:
    out = Path(target)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    archive = load_sledge_archive(archive_file)
    core = archive.model.core
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in core.state_dict().items()},
               out / "state.pt")
    meta = {"layer_indices": core.layer_indices, "pooling": core.pooling,
            "num_labels": core.exits[0].classifier.out_features, "archive": archive_file, "data": data_file}
    (out / "meta.json").write_text(json.dumps(meta))
    with extracted_archive(archive_file) as directory:
        (out / "backbone").mkdir()
        shutil.copy(Path(directory) / "backbone" / "config.json", out / "backbone" / "config.json")
    instances = read_labelled(archive, data_file)
    (batch,) = tensor_batches(instances, archive, len(instances), torch.device("cpu"))
    tokens = batch["tokens"]
    torch.save({"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"],
                "token_type_ids": tokens["token_type_ids"], "labels": batch["label"]}, out / "data.pt")
    print(f"bundle in {out}: {len(instances)} instances")


if __name__ == "__main__":
    main(*sys.argv[1:4])
