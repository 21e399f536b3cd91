"""benchmarks/report.py: records in, tables out; docs/RESULTS.md is what it generates from docs/results/."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _report():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _suite_record(psnr: float) -> dict:
    fig = {"test_psnr": psnr, "test_psnr_before_testoptim": psnr - 2.0, "test_ssim": 0.9,
           "test_median_image_psnr": 20.0, "offsets_mae_frames": 0.012, "train_wall_s": 600.0,
           "train_peak_rss_mib": 500.0}
    run = {"name": "default-sigma3-sync-seed0", "variant": "sync", "train_seed": 0, "scene": "default",
           "train_psnr": 33.0, **fig}
    return {"name": "scene_suite", "config": "synthetic/sync-kplanes", "sigma": 3.0, "threads": 2, "jobs": 1,
            "train_seeds": [0], "overrides": [], "runs": [run],
            "medians": {"default/sync": {**fig, "each_test_psnr": [psnr]}}}


def test_two_records_make_their_tables(tmp_path):
    report = _report()
    field = {"name": "field", "size": "published", "samples": 8, "rays": 2, "points": "uniform",
             "samples_per_s": 2.0e5, "total_ms": 40.0, "encoder_fwd_ms": 5.0, "encoder_bwd_ms": 15.0, "glue_ms": 2.0,
             "density_mlp_fwd_ms": 3.0, "density_mlp_bwd_ms": 5.0, "color_mlp_fwd_ms": 4.0, "color_mlp_bwd_ms": 6.0,
             "threads": 2, "arch": "cpu", "torch_samples_per_s": 5.0e4, "torch_total_ms": 160.0,
             "speedup_vs_torch": 4.0}
    report.record(_suite_record(30.0), argv=["benchmarks/scene_suite.py", "--out", "s"], folder=tmp_path)
    report.record(_suite_record(31.5), argv=["benchmarks/scene_suite.py", "--out", "s"], folder=tmp_path)
    report.record(field, argv=["benchmarks/field.py", "--threads", "2"], folder=tmp_path)
    lines = (tmp_path / "scene_suite.jsonl").read_text().splitlines()
    assert len(lines) == 2
    rec = json.loads(lines[0])["recorded"]
    assert set(rec) == {"date", "machine", "command"} and "cores" in rec["machine"]

    text = report.generate(tmp_path, gpu_files=[])
    assert text.startswith(report.HEADER)
    assert "### Sync-K-Planes (`synthetic/sync-kplanes`)" in text
    # the newer of the two records of one configuration counts: 31.5 dB, margin over the 20 dB floor
    assert "| default | **31.50 dB** | 29.50 dB | 33.00 dB | 20.00 dB | +11.50 dB | 0.900 | 0.012 | 10.0 min |" in text
    assert "30.00 dB" not in text
    assert "| uniform | 40 | 5 / 15 | 18 | 2 | 0.200 | 160 | 0.050 | **4.00x** |" in text
    assert "`python benchmarks/field.py --threads 2`" in text
    assert "## On a GPU" not in text and "Sync-MixVoxels" not in text


def test_results_page_is_current():
    report = _report()
    want = report.generate()
    have = (ROOT / "docs" / "RESULTS.md").read_text()
    assert have == want, "docs/RESULTS.md is stale: run python benchmarks/report.py"


def test_scale_table_takes_each_stage_from_its_newest_record():
    report = _report()

    def rec(preset_peaks, date):
        stages = [{"stage": "make_scene", "set": "plenoptic", "wall_s": 10.0, "peak_anon_mib": 100}]
        stages += [{"stage": "train", "set": "plenoptic", "preset": p, "wall_s": 5.0, "cpu_s": 4.0, "peak_anon_mib": a}
                   for p, a in preset_peaks]
        return {"name": "scale", "threads": 1, "steps": 5, "testoptim_steps": 3, "plenoptic_downsample": 1,
                "anon_limit_mib": 4096, "sets": {"plenoptic": {"cameras": 20, "frames": 300, "size": "1352x1014"}},
                "stages": stages, "recorded": {"date": date, "machine": "m", "command": f"scale {date}"}}

    recs = [rec([("a", 5000), ("b", 3000)], "d1"), rec([("b", 2000)], "d2"), rec([("a", 3900)], "d3")]
    text = "\n".join(report.scale(recs))
    assert "| `a` | train |" in text and "| `b` | train |" in text
    assert "3900 MiB" in text and "2000 MiB" in text and "5000 MiB" not in text and "3000 MiB" not in text
    assert "Largest anonymous peak: **3900 MiB** (a train)" in text and "**within**" in text
    assert "scale d1" not in text and "scale d2" in text and "scale d3" in text
    # a newer record of another stage of a: both rows, in stage order, the eval one from d4
    d4 = rec([], "d4")
    d4["stages"] = [{"stage": "eval", "set": "plenoptic", "preset": "a", "wall_s": 600.0, "cpu_s": 900.0,
                     "peak_anon_mib": 1234, "frames": 1, "size": "1352x1014", "seconds": 590.0, "grid": "final"}]
    text = "\n".join(report.scale(recs + [d4]))
    assert text.index("| `a` | train |") < text.index("| `a` | eval |") and "3900 MiB" in text
    assert "1 frame, 1352x1014, 590 s, grids at their final size" in text and "scale d4" in text
