"""Every GPU measurement of the project in one run: one JSON and one log under an output folder.

    bash benchmarks/gpu_run.sh OUT                 # on a GPU machine (installs the project first)
    python benchmarks/gpu_run.py --out OUT --cpu-smoke   # the same steps, tiny, on a CPU

Steps, in order of importance (each in its own process with its own time limit, each recorded as
ok / failed / skipped with its output, the JSON rewritten after every step so that a kill keeps
what was measured):

1. ``pytest -m gpu``: resume on CUDA, CUDA sync-debug audits of the training steps and evaluation.
2. ``benchmarks/train_step.py``: warm-up / self-training step and evaluation, fp32 eager vs the
   fast configuration vs ``torch.compile``, peak memory; then ``--accumulate 3``.
3. ``benchmarks/inference.py --no-cpu``: eager fp32/bf16/fp16, compiled, ``.pt2``, ONNX Runtime.
4. A short ``diga adapt`` in bf16 and in fp32 (same seed): target-val mIoU of each.
5. ``diga warmup`` killed (SIGKILL) after its first checkpoint, then resumed to the end.
6. ``benchmarks/tensorrt_check.py`` when TensorRT is importable.

``--cpu-smoke`` runs the same commands with tiny models, images and step counts on the CPU, so a
typo cannot waste the GPU call (``tests/test_gpu_run.py`` runs it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
GPU_TESTS = ["tests/test_engine_device_paths.py", "tests/test_engine_host_sync.py", "tests/test_method_sync.py"]
PYTHON_DEPENDENCIES = ["torch", "torchvision", "numpy", "PIL", "yaml", "safetensors", "typer", "rich", "onnx",
                       "onnxruntime", "matplotlib", "pytest"]


@dataclass
class Settings:
    """What differs between the real GPU run and its CPU rehearsal."""

    smoke: bool
    device: str
    train_step: list[str]
    inference: list[str]
    data: dict = field(default_factory=dict)  # synthetic benchmark parameters
    stage: list[str] = field(default_factory=list)  # options for diga adapt / warmup
    adapt_steps: tuple[int, int] = (400, 200)  # warm-up, self-training
    kill_steps: tuple[int, int] = (600, 100)  # warm-up steps, checkpoint interval


def settings(smoke: bool) -> Settings:
    if smoke:
        return Settings(
            smoke=True, device="cpu",
            train_step=["--device", "cpu", "--model", "deeplabv2_light", "--crop", "48", "96",
                        "--eval-size", "64", "128", "--batch", "2", "--warmup", "0", "--iters", "1"],
            inference=["--gpu-device", "cpu", "--gpu-model", "deeplabv2_light", "--gpu-imgsz", "64", "128",
                       "--no-pt2", "--no-compile", "--warmup", "1", "--iters", "2"],
            data={"n_train": 8, "n_val": 4, "size": (64, 128)},
            stage=["--crop", "48", "96", "--batch-size", "2", "--workers", "0", "--device", "cpu"],
            adapt_steps=(4, 3), kill_steps=(30, 5),
        )
    return Settings(smoke=False, device="cuda", train_step=["--compile"], inference=[])


class Run:
    """Runs the steps, appends every output to the log and keeps the JSON up to date."""

    def __init__(self, out: Path, deadline_s: float, smoke: bool) -> None:
        self.out, self.deadline = out, time.monotonic() + deadline_s
        self.log = out / "gpu_run.log"
        self.report = {"mode": "cpu-smoke" if smoke else "gpu", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "environment": environment(), "steps": []}
        self.write()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def write(self) -> None:
        (self.out / "gpu_run.json").write_text(json.dumps(self.report, indent=2, default=str) + "\n")

    def record(self, name: str, status: str, seconds: float = 0.0, **extra) -> dict:
        entry = {"step": name, "status": status, "seconds": round(seconds, 1), **extra}
        self.report["steps"].append(entry)
        self.write()
        print(f"== {name}: {status} ({entry['seconds']} s)", flush=True)
        return entry

    def command(self, name: str, cmd: list[str], limit_s: float, result: Path | None = None,
                env: dict | None = None) -> dict:
        """Run ``cmd``; the step is ok when it exits 0 (and wrote ``result`` if one is named)."""
        limit = min(limit_s, self.left())
        if limit < 20:
            return self.record(name, "skipped", reason="the run's time budget is spent")
        with open(self.log, "a") as log:
            log.write(f"\n===== {name}: {' '.join(cmd)}\n")
            log.flush()
            t = time.perf_counter()
            try:
                proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      timeout=limit, env={**os.environ, **(env or {})})
                output, rc = proc.stdout, proc.returncode
            except subprocess.TimeoutExpired as e:
                output, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), None
            log.write(output)
        seconds = time.perf_counter() - t
        if rc is None:
            return self.record(name, "failed", seconds, error=f"timed out after {limit:.0f} s", tail=output[-2000:])
        data = json.loads(result.read_text()) if result is not None and result.exists() else None
        if rc != 0 or (result is not None and data is None):
            return self.record(name, "failed", seconds, exit_code=rc, tail=output[-2000:])
        return self.record(name, "ok", seconds, result=data, tail=output[-600:])


def environment() -> dict:
    env = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
           "missing_python_packages": [m for m in PYTHON_DEPENDENCIES if importlib.util.find_spec(m) is None]}
    try:
        import torch

        env["torch"] = torch.__version__
        env["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
            env["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
            env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    except ImportError as e:
        env["torch"] = f"not importable: {e}"
    return env


def cli(*args: str) -> list[str]:
    return [PY, "-m", "diga.cli", *args]


def benchmark_data(work: Path, s: Settings) -> dict[str, str]:
    """The built-in benchmark (tiny for the rehearsal), generated once under ``work``."""
    from diga.engine.benchmark import synthetic_benchmark

    return synthetic_benchmark(root=work / "bench", **s.data)


def adapt_in(run: Run, s: Settings, data: dict, work: Path) -> None:
    """bf16 vs fp32, same seed and steps: the fast path must not cost accuracy."""
    mious = {}
    for amp in ("bf16", "fp32"):
        name = f"adapt_{amp}"
        step = run.command(name, cli(
            "adapt", "--source", data["source"], "--target", data["target"], "--val", data["val"],
            "--preset", "cpu", "--amp", amp, "--seed", "0", "--rounds", "1",
            "--steps", str(s.adapt_steps[0]), "--selftrain-steps", str(s.adapt_steps[1]),
            "--name", amp, "--project", str(work / "runs"), *s.stage,
        ), 240, result=work / "runs" / "adapt" / amp / "results.json")
        if step["status"] == "ok":
            rows = {r["stage"]: r["target_val_miou"] for r in step["result"]["rows"]}
            step["mious"], mious[amp] = rows, list(rows.values())[-1]
    if len(mious) == 2:
        run.report["adapt_bf16_minus_fp32"] = round(mious["bf16"] - mious["fp32"], 2)
        run.write()


def kill_and_resume(run: Run, s: Settings, data: dict, work: Path) -> None:
    """SIGKILL a warm-up once its first checkpoint exists, then resume it to the end on the same device."""
    name, t = "warmup_kill_resume", time.perf_counter()
    from diga.engine.config import preset

    stage_dir = work / "runs" / "warmup" / "killed"
    steps, every = s.kill_steps
    config = work / "kill.yaml"  # the checkpoint interval is a config setting, not a CLI option
    config.write_text(preset("cpu").replace(ckpt_every=every, eval_every=0, vis_every=0).to_yaml())
    cmd = cli("warmup", "--config", str(config), "--source", data["source"], "--target", data["target"],
              "--steps", str(steps), "--name", "killed", "--project", str(work / "runs"), *s.stage)
    state = stage_dir / "weights" / "state.safetensors"
    with open(run.log, "a") as log:
        log.write(f"\n===== {name}: {' '.join(cmd)} (killed after its first checkpoint)\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        limit = time.monotonic() + min(180, run.left())
        while not state.exists() and proc.poll() is None and time.monotonic() < limit:
            time.sleep(0.2)
        if proc.poll() is not None or not state.exists():
            proc.kill()
            run.record(name, "failed", time.perf_counter() - t,
                       error="the warm-up ended or timed out before its first checkpoint")
            return
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    step = run.command(name, cmd + ["--resume"], 240)
    step["seconds"] = round(time.perf_counter() - t, 1)
    resumed = "resuming warmup from step" in run.log.read_text()  # the log holds the resumed run's output
    finished = (stage_dir / "summary.json").exists()
    if step["status"] == "ok" and not (resumed and finished):
        step["status"], step["error"] = "failed", f"resumed: {resumed}, finished: {finished}"
    run.write()


def tensorrt_available() -> bool:
    return any(importlib.util.find_spec(m) is not None for m in ("tensorrt", "tensorrt_rtx"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for gpu_run.json, gpu_run.log and step results")
    ap.add_argument("--cpu-smoke", action="store_true", help="rehearse every step on the CPU with tiny sizes")
    ap.add_argument("--budget", type=float, default=480, help="seconds for the whole run (steps past it are skipped)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder for data and runs (default OUT/work)")
    args = ap.parse_args()
    s = settings(args.cpu_smoke)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = (args.work or Path(os.environ.get("TMPDIR", "/tmp")) / "diga-gpu-run").resolve()
    work.mkdir(parents=True, exist_ok=True)
    run = Run(out, args.budget, args.cpu_smoke)
    if not args.cpu_smoke and "gpu" not in run.report["environment"]:
        run.record("environment", "failed", error="no CUDA GPU visible to torch; use --cpu-smoke to rehearse")
        return 1
    data = benchmark_data(work, s)
    pytest_env = {"DIGA_CACHE": str(work / "cache")}
    run.command("pytest_gpu", [PY, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider", *GPU_TESTS],
                150, env=pytest_env)
    run.command("train_step", [PY, "benchmarks/train_step.py", *s.train_step, "--data", str(work / "step-data"),
                               "--json", str(out / "train_step.json")], 200, result=out / "train_step.json")
    acc = [a for a in s.train_step if a != "--compile"]
    run.command("train_step_accumulate3", [PY, "benchmarks/train_step.py", *acc, "--accumulate",
                                           "2" if s.smoke else "3", "--data", str(work / "step-data"),
                                           "--json", str(out / "train_step_acc.json")], 120,
                result=out / "train_step_acc.json")
    run.command("inference", [PY, "benchmarks/inference.py", "--no-cpu", *s.inference,
                              "--json", str(out / "inference.json")], 200, result=out / "inference.json")
    adapt_in(run, s, data, work)
    kill_and_resume(run, s, data, work)
    if tensorrt_available() or s.smoke:
        trt = ["--model", "deeplabv2_light", "--imgsz", "64", "128"] if s.smoke else []
        run.command("tensorrt_check", [PY, "benchmarks/tensorrt_check.py", *trt, "--json", str(out / "tensorrt.json")],
                    150, result=out / "tensorrt.json")
    else:
        run.record("tensorrt_check", "skipped", reason="neither tensorrt nor tensorrt_rtx is importable")
    failed = [x["step"] for x in run.report["steps"] if x["status"] == "failed"]
    run.report["failed_steps"] = failed
    run.write()
    print(f"\n{len(run.report['steps'])} steps, failed: {failed or 'none'}; results in {out / 'gpu_run.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
