import pytest

from budgetopt.core.errors import InputError
from budgetopt.model.hardware import DTYPES, get_accelerator, load_catalog

# the vendors' datasheets (the project specification's table), transcribed independently of the data
# file: fp32, tf32, bf16/fp16, fp8, mem, TB/s
DATASHEETS = {
    "v100": (15.7, None, 125, None, 32, 0.90),
    "a100-40gb": (19.5, 156, 312, None, 40, 1.555),
    "a100-80gb": (19.5, 156, 312, None, 80, 2.039),
    "h100-sxm": (67, 494.5, 989, 1979, 80, 3.35),
    "h100-pcie": (51, 378, 756, 1513, 80, 2.0),
    "h200": (67, 494.5, 989, 1979, 141, 4.8),
    "b200": (80, 1100, 2250, 4500, 180, 8.0),
    "l40s": (91.6, 183, 362, 733, 48, 0.864),
    "mi250x": (47.9, None, 383, None, 128, 3.2),
    "mi300x": (163.4, 653.7, 1307, 2614, 192, 5.3),
    "tpu-v4": (None, None, 275, None, 32, 1.2),
    "tpu-v5e": (None, None, 197, None, 16, 0.819),
    "tpu-v5p": (None, None, 459, None, 95, 2.765),
    "tpu-v6e": (None, None, 918, None, 32, 1.638),
}


@pytest.mark.parametrize("hid", sorted(DATASHEETS))
def test_catalog_matches_design(hid):
    acc = load_catalog()[hid]
    fp32, tf32, half, fp8, mem, bw = DATASHEETS[hid]
    assert acc.peak_tflops.get("fp32") == fp32
    assert acc.peak_tflops.get("tf32") == tf32
    # "bf16/fp16" column: V100 has only fp16 tensor cores, TPUs only bf16
    assert {acc.peak_tflops.get("bf16"), acc.peak_tflops.get("fp16")} - {None} == {half}
    assert acc.peak_tflops.get("fp8") == fp8
    assert acc.memory_gb == mem and acc.bandwidth_tbs == bw
    assert acc.source
    assert acc.peak_flops("fp16" if "fp16" in acc.peak_tflops else "bf16") == half * 1e12


def test_unknown_id_suggests_closest():
    with pytest.raises(InputError) as e:
        get_accelerator("a100")
    assert e.value.field == "gpu"
    assert any(f"did you mean {pair}" in e.value.message for pair in ("a100-40gb, a100-80gb", "a100-80gb, a100-40gb"))


def test_missing_dtype_is_an_error():
    with pytest.raises(InputError) as e:
        get_accelerator("tpu-v4").peak_flops("fp8")
    assert e.value.field == "dtype" and "bf16" in e.value.message
    with pytest.raises(InputError):
        get_accelerator("h100-sxm").peak_flops("int4")


def test_user_file_adds_and_overrides(tmp_path):
    f = tmp_path / "hw.toml"
    f.write_text('[my-chip]\nname = "Mine"\nmemory_gb = 64\nbandwidth_tbs = 2\nsource = "lab"\n'
                 'peak_tflops = { bf16 = 500.0 }\n'
                 '[h100-sxm]\nmemory_gb = 80\nbandwidth_tbs = 3.35\npeak_tflops = { bf16 = 900.0 }\n')
    cat = load_catalog(f)
    assert cat["my-chip"].peak_flops("bf16") == 500e12
    assert cat["h100-sxm"].peak_flops("bf16") == 900e12
    assert "v100" in cat


@pytest.mark.parametrize("body,field", [
    ('[x]\npeak_tflops = { bf17 = 1.0 }\n', "peak_tflops.bf17"),
    ('[x]\npeak_tflops = { bf16 = -1.0 }\n', "peak_tflops.bf16"),
    ('[x]\nmemory = 3\npeak_tflops = { bf16 = 1.0 }\n', "memory"),
    ('[x]\nname = "no peaks"\n', "peak_tflops"),
    ('[x\n', "hardware_file"),
])
def test_bad_user_file(tmp_path, body, field):
    f = tmp_path / "hw.toml"
    f.write_text(body)
    with pytest.raises(InputError) as e:
        load_catalog(f)
    assert field in e.value.field or field in str(e.value)


def test_dtypes_listed():
    assert DTYPES == ("fp32", "tf32", "bf16", "fp16", "fp8", "fp4")
    b200 = get_accelerator("b200", load_catalog())
    assert b200.peak_flops("fp4") == 2 * b200.peak_flops("fp8") == 4 * b200.peak_flops("bf16")
