"""Run by test_triton.py in a subprocess: compile the Triton kernels ahead of time for an NVIDIA target.

No GPU is needed: triton lowers the kernels through its real pipeline (TTIR → TTGIR → LLVM → PTX) and
its bundled ptxas assembles the cubin, so API or lowering errors that the interpreter cannot see show up
here. argv: the compute capability (90 = H100/H200). Prints ptxas' register and spill report per kernel.
"""

import os
import subprocess
import sys
import tempfile

assert os.environ.get("TRITON_INTERPRET", "0") != "1"

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from phidice.kernels import triton_dice as T

ARCH = int(sys.argv[1])
try:  # the ptxas triton itself assembles with (its own, or a newer one it found)
    from triton.backends.nvidia.compiler import get_ptxas

    PTXAS = get_ptxas(ARCH).path
except Exception:  # an older/newer triton: skip the register report, the compile above still ran
    PTXAS = ""
TYPES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.float64: "fp64"}

# (C, logits dtype, softmax, mask): a 118-class multi-organ case, small C, one sigmoid channel, float64
CASES = [
    (118, torch.bfloat16, True, False),
    (4, torch.float32, True, True),
    (1, torch.float16, False, True),
    (3, torch.float64, True, False),
]

for C, dtype, softmax, has_mask in CASES:
    cfg = T._config(C, dtype)
    num_warps = cfg.pop("num_warps")
    acc = "fp64" if dtype == torch.float64 else "fp32"
    x = f"*{TYPES[dtype]}"
    consts = dict(cfg, HAS_MASK=has_mask, SOFTMAX=softmax, OFFSET=int(not softmax and C == 1))
    signatures = {
        "fwd": (
            T._fwd_kernel,
            {
                "x_ptr": x,
                "lab_ptr": "*i64",
                "mask_ptr": f"*{acc}",
                "part_ptr": f"*{acc}",
                "C": "i32",
                "N": "i32",
                "NB": "i32",
            },
        ),
        "bwd": (
            T._bwd_kernel,
            {
                "x_ptr": x,
                "lab_ptr": "*i64",
                "mask_ptr": f"*{acc}",
                "gi_ptr": f"*{acc}",
                "gp_ptr": f"*{acc}",
                "grad_ptr": x,
                "C": "i32",
                "N": "i32",
            },
        ),
    }
    for name, (fn, sig) in signatures.items():
        sig = dict(sig, **{k: "constexpr" for k in consts})
        kernel = triton.compile(
            ASTSource(fn=fn, signature=sig, constexprs=consts),
            target=GPUTarget("cuda", ARCH, 32),
            options={"num_warps": num_warps},
        )
        assert len(kernel.asm["cubin"]) > 0
        report = ""
        if PTXAS and os.path.exists(PTXAS):
            with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
                f.write(kernel.asm["ptx"])
            arch = next(
                line.split()[1].rstrip(",") for line in kernel.asm["ptx"].splitlines() if line.startswith(".target")
            )  # e.g. sm_90a
            out = subprocess.run(
                [PTXAS, "-v", f"--gpu-name={arch}", f.name, "-o", os.devnull], capture_output=True, text=True
            )
            os.unlink(f.name)
            lines = (out.stdout + out.stderr).splitlines()
            report = " | ".join(
                line.split(":", 1)[-1].strip() for line in lines if "registers" in line or "spill" in line
            )
            if out.returncode:
                report = "ptxas -v failed: " + " ".join(lines)[:300]
        print(f"sm_{ARCH} C={C} {TYPES[dtype]} {'softmax' if softmax else 'sigmoid'} mask={has_mask} {name}: {report}")
print("TRITON-COMPILE-OK")
