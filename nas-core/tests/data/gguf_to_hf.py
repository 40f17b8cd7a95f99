"""Writes a Hugging Face model directory from a Gemma 3 GGUF, for the test of
`nas-core finetune --base DIR`: no Hugging Face model can be downloaded here, so the
test makes one from the GGUF that scripts/local-llm.sh installs.

The directory is what a download from the Hub holds: `config.json` (with
`architectures`), `model.safetensors`, the fast tokenizer's files and a SentencePiece
`tokenizer.model` rebuilt from the GGUF's vocabulary (pieces, scores, types and the
special ids), which llama.cpp's convert_hf_to_gguf.py reads for Gemma 3.

Usage: python gguf_to_hf.py BASE.gguf OUT_DIR   (with scripts/finetune-env.sh's Python)
"""

import json
import os
import sys


def field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def main():
    gguf_path, out = os.path.abspath(sys.argv[1]), sys.argv[2]
    import gguf
    import torch
    from sentencepiece import sentencepiece_model_pb2 as spm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    here, name = os.path.dirname(gguf_path), os.path.basename(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(here, gguf_file=name, dtype=torch.float32)
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(here, gguf_file=name).save_pretrained(out)

    reader = gguf.GGUFReader(gguf_path)
    tokens = field(reader, "tokenizer.ggml.tokens")
    scores = field(reader, "tokenizer.ggml.scores")
    types = field(reader, "tokenizer.ggml.token_type")
    proto = spm.ModelProto()
    ts = proto.trainer_spec
    ts.model_type = spm.TrainerSpec.BPE
    ts.vocab_size = len(tokens)
    ts.byte_fallback = True
    for key, attr in [("unknown", "unk"), ("bos", "bos"), ("eos", "eos"), ("padding", "pad")]:
        i = field(reader, f"tokenizer.ggml.{key}_token_id")
        if i is not None:
            setattr(ts, f"{attr}_id", int(i))
            setattr(ts, f"{attr}_piece", tokens[int(i)])
    ns = proto.normalizer_spec
    ns.name = "identity"
    ns.add_dummy_prefix = False
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    # GGUF token types use SentencePiece's numbering (1 normal … 6 byte).
    for piece, score, kind in zip(tokens, scores, types):
        p = proto.pieces.add()
        p.piece = piece
        p.score = float(score)
        p.type = int(kind)
    unk = field(reader, "tokenizer.ggml.unknown_token_id")
    if unk is not None:
        proto.pieces[int(unk)].type = spm.ModelProto.SentencePiece.UNKNOWN
    with open(os.path.join(out, "tokenizer.model"), "wb") as f:
        f.write(proto.SerializeToString())

    # Control and user-defined tokens (e.g. runs of spaces, matched whole) are listed
    # in tokenizer_config.json, as in a Hub download; the converter takes their types
    # from there.
    path = os.path.join(out, "tokenizer_config.json")
    with open(path) as f:
        config = json.load(f)
    added = config.setdefault("added_tokens_decoder", {})
    for i, (piece, kind) in enumerate(zip(tokens, types)):
        if int(kind) in (3, 4):
            added[str(i)] = {
                "content": piece,
                "special": int(kind) == 3,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "single_word": False,
            }
    with open(path, "w") as f:
        json.dump(config, f, indent=1)
    print(out)


if __name__ == "__main__":
    main()
