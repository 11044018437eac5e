"""Colours the user knows (issue 27): point hints, hints files, a reference photo, --saturation; the
hint model's gate (no hint: exactly the flagship it starts from), its export, and its training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_photo
from PIL import Image
from skimage.color import rgb2lab
from textures import textured
from typer.testing import CliRunner

from colorize_cli.app.train import TrainConfig, Trainer
from colorize_cli.app.train.hints import histogram, simulate_hints
from colorize_cli.cli import app
from colorize_cli.color import ab_bins, ab_histogram, in_gamut, saturate
from colorize_cli.engine.colorizer import Colorizer
from colorize_cli.engine.networks import export_generator
from colorize_cli.errors import OptionError
from colorize_cli.hints import Hints, colour_ab, hint_inputs, parse_hint, read_hints_file, reference_hints
from colorize_cli.io.images import Photo
from colorize_cli.models import create_model

TINY = {"width": 4}


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def error_lines(result) -> list[str]:
    return [ln for ln in result.output.splitlines() if ln.startswith("error:")]


# ----- parsing -----
def test_a_hint_reads_x_y_and_a_hex_or_css_colour():
    red = parse_hint("120,80=red")
    assert (red.x, red.y) == (120, 80)
    assert red.ab == pytest.approx(colour_ab("#ff0000"))
    assert red.ab[0] > 70 and red.ab[1] > 60  # CIELAB red: a and b both large and positive
    gray = parse_hint(" 3 , 4 = #808080 ")
    assert max(abs(v) for v in gray.ab) < 0.01  # a gray hint is a hint (of no chroma), not "no hint"


@pytest.mark.parametrize("text, says", [("120,80", "expected X,Y=COLOR"), ("a,b=red", "expected X,Y=COLOR"),
                                        ("1,2=reddish", "not a colour"), ("1,2=#12345", "not a colour")])
def test_a_bad_hint_says_what_is_wrong(text, says):
    with pytest.raises(OptionError, match=says):
        parse_hint(text)


def test_hints_files_in_json_and_csv(tmp_path):
    (tmp_path / "h.json").write_text(json.dumps({"a.jpg": ["1,2=red", "3,4=#0000ff"], "b.png": []}))
    table = read_hints_file(tmp_path / "h.json")
    assert [(p.x, p.y) for p in table["a.jpg"].points] == [(1, 2), (3, 4)] and table["b.png"].points == []
    (tmp_path / "h.csv").write_text("file,x,y,colour\na.jpg,1,2,red\na.jpg,3,4,#0000ff\n")
    assert [p.ab for p in read_hints_file(tmp_path / "h.csv")["a.jpg"].points] == [p.ab for p in table["a.jpg"].points]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(OptionError, match="not valid JSON"):
        read_hints_file(tmp_path / "bad.json")


def test_points_land_on_the_working_pixel_that_covers_them():
    hints = Hints([parse_hint("0,0=red"), parse_hint("199,99=blue")])
    inputs = hint_inputs([hints, Hints()], [(100, 200), (100, 200)], (32, 64), bins=len(ab_bins()))
    mask = inputs["hint_mask"]
    assert mask[0, 0, 0, 0] == 1 and mask[0, 0, 31, 63] == 1 and mask.sum() == 2 and mask[1].sum() == 0
    assert inputs["hint_ab"][0, :, 0, 0] == pytest.approx(np.array(colour_ab("red")) / 110, abs=1e-6)
    assert not inputs["hint_hist"].any()


def test_a_reference_gives_its_colour_distribution_and_saturation():
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :10] = (255, 0, 0)
    rgb[:, 10:] = (0, 0, 255)
    ref = reference_hints(rgb)
    assert ref.histogram.sum() == pytest.approx(1) and np.count_nonzero(ref.histogram) == 2
    assert sorted(ref.histogram[ref.histogram > 0]) == pytest.approx([1 / 3, 2 / 3])
    lab = rgb2lab(rgb)
    assert ref.saturation == pytest.approx(float(np.hypot(lab[..., 1], lab[..., 2]).mean()), rel=1e-4)
    # the training side bins colours the same way
    ab = torch.from_numpy(lab[..., 1:].transpose(2, 0, 1)[None].astype(np.float32) / 110)
    assert histogram(ab)[0].numpy() == pytest.approx(ab_histogram(lab[..., 1:].transpose(2, 0, 1)), abs=1e-6)


# ----- the model -----
def _tiny_pair(seed: int = 0):
    torch.manual_seed(seed)
    base = create_model("efflite-unet-gan", **TINY).eval()
    hinted = create_model("efflite-unet-hints", **TINY)
    hinted.load_state_dict(base.state_dict(), strict=False)
    return base, hinted.eval()


def _wake(model) -> None:
    """Give the zero-initialised last layers of the hint branches some weight (as training would)."""
    g = torch.Generator().manual_seed(1)
    for layer in [b.net[-1] for b in model.hint_branches] + [model.global_hint[-1]]:
        layer.weight.data = torch.randn(layer.weight.shape, generator=g) * 0.5


def test_without_hints_the_hint_model_is_exactly_the_flagship_it_starts_from():
    base, hinted = _tiny_pair()
    _wake(hinted)
    x = torch.rand(2, 1, 64, 96) * 2 - 1
    zeros = {k: v for k, v in hinted.example_inputs(2, 64, 96).items()}
    with torch.no_grad():
        assert torch.equal(base(x), hinted(x))
        assert torch.equal(base(x), hinted(x, **zeros))  # hints all zero: the gate is shut
        hints = simulate_hints(torch.rand(2, 2, 64, 96) * 0.6 - 0.3, torch.Generator().manual_seed(0))
        assert not torch.equal(base(x), hinted(x, *hints))


def test_only_the_hint_branches_learn_and_the_flagship_keeps_its_statistics():
    _, hinted = _tiny_pair()
    learn = {id(p) for p in hinted.trainable_parameters()}
    assert learn and all(id(p) not in learn for p in hinted.encoder.parameters())
    hinted.train()
    assert not hinted.encoder.training and not hinted.ups.training and hinted.hint_branches.training


def test_training_with_simulated_hints_lowers_the_loss_and_leaves_the_flagship(tmp_path):
    base, _ = _tiny_pair()
    init = export_generator(base, "efflite-unet-gan", tmp_path / "base.safetensors", options=TINY)
    trainer = Trainer(TrainConfig(model="efflite-unet-hints", dataset="", output=str(tmp_path / "run"), size=64,
                                  init=str(init), discriminator_options={"width": 8}, lr=2e-3))
    g = torch.Generator().manual_seed(3)
    l_norm = torch.rand(4, 1, 64, 64, generator=g) * 2 - 1
    ab = torch.zeros(4, 2, 64, 64)
    ab[:, 0], ab[:, 1] = 0.4, -0.3  # one strong colour, which the hints tell
    before = {k: v.clone() for k, v in trainer.generator.state_dict().items() if not k.startswith(("global", "hint"))}
    losses = [trainer.train_step(l_norm, ab)["loss_l1"] for _ in range(30)]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses
    after = trainer.generator.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # weights and batch-norm statistics


# ----- the pipeline and the command line -----
@pytest.fixture
def tiny_hint_weights(tmp_path):
    _, hinted = _tiny_pair()
    _wake(hinted)
    return export_generator(hinted, "efflite-unet-hints", tmp_path / "hints.safetensors", options=TINY)


def test_a_hint_changes_the_colour_and_keeps_the_l_channel(tmp_path, tiny_hint_weights):
    gray = textured(96, 128, seed=2, color=False)
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert run(tmp_path / "g.png", "--model", tiny_hint_weights, "--output", tmp_path / "plain").exit_code == 0
    result = run(tmp_path / "g.png", "--model", tiny_hint_weights, "--hint", "60,40=#2050e0",
                 "--output", tmp_path / "hinted")
    assert result.exit_code == 0, result.output
    plain = np.asarray(Image.open(tmp_path / "plain" / "g_color.png"))
    hinted = np.asarray(Image.open(tmp_path / "hinted" / "g_color.png"))
    assert np.abs(plain.astype(int) - hinted).mean() > 0.5
    lum = rgb2lab(hinted)[..., 0]
    assert np.abs(lum - rgb2lab(np.dstack([gray] * 3))[..., 0]).mean() < 0.3  # the photo's own L


def test_the_onnx_graph_takes_the_hints_as_torch_does(tmp_path, tiny_hint_weights, monkeypatch):
    monkeypatch.setenv("COLORIZE_CACHE", str(tmp_path / "cache"))
    photo = Photo(textured(96, 128, seed=2, color=False))
    hints = Hints([parse_hint("60,40=#2050e0"), parse_hint("5,90=yellow")])
    outs = {}
    for backend in ("onnx", "torch"):
        c = Colorizer(str(tiny_hint_weights), backend=backend)
        l_norm = c.working_input(photo)
        outs[backend] = c.predict(l_norm, hints=hint_inputs([hints], [photo.size], l_norm.shape[-2:], c.hint_bins))
    assert np.abs(outs["onnx"] - outs["torch"]).max() < 1e-3


@pytest.mark.parametrize("args, says", [
    (["--hint", "500,10=red"], "lies outside the photo"),
    (["--hint", "5,5=notacolour"], "not a colour"),
    (["--hint", "5,5"], "expected X,Y=COLOR"),
])
def test_bad_hints_stop_before_anything_is_written(tmp_path, tiny_hint_weights, args, says):
    photo = make_photo(tmp_path / "in" / "p.png", size=(64, 48), mode="L")
    result = run(photo, "--model", tiny_hint_weights, *args)
    assert result.exit_code == 2, result.output
    (line,) = error_lines(result)
    assert says in line and "--hint" in line
    assert sorted(p.name for p in photo.parent.iterdir()) == ["p.png"]


def test_a_hints_file_that_names_a_missing_input_stops_the_batch(tmp_path, tiny_hint_weights):
    make_photo(tmp_path / "in" / "p.png", mode="L")
    (tmp_path / "h.json").write_text(json.dumps({"elsewhere.jpg": ["1,1=red"]}))
    result = run(tmp_path / "in", "--model", tiny_hint_weights, "--hints", tmp_path / "h.json")
    assert result.exit_code == 2 and "elsewhere.jpg, which is not among the inputs" in error_lines(result)[0]
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["p.png"]


def test_hints_for_a_model_that_cannot_take_them_are_refused(tmp_path, tiny_weights):
    photo = make_photo(tmp_path / "p.png", mode="L")
    result = run(photo, "--model", tiny_weights, "--hint", "2,2=red")
    assert result.exit_code == 2
    assert "takes no colour hints" in error_lines(result)[0] and not (tmp_path / "p_color.png").exists()


def test_a_reference_photo_guides_a_folder_and_a_hints_file_each_photo(tmp_path, tiny_hint_weights):
    make_photo(tmp_path / "in" / "a.png", size=(64, 48), mode="L", seed=1)
    make_photo(tmp_path / "in" / "b.png", size=(64, 48), mode="L", seed=2)
    reference = make_photo(tmp_path / "ref.png", size=(40, 30), mode="RGB")
    (tmp_path / "h.csv").write_text("a.png,10,10,green\n")
    result = run(tmp_path / "in", "--model", tiny_hint_weights, "--reference", reference,
                 "--hints", tmp_path / "h.csv", "--output", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"a_color.png", "b_color.png"}


# ----- saturation -----
def test_saturation_zero_is_gray_and_above_one_more_colourful_inside_the_gamut(tmp_path):
    weights = export_generator(create_model("unet-sn", width=4).eval(), "unet-sn", tmp_path / "u.safetensors",
                               options={"width": 4})
    photo = make_photo(tmp_path / "p.png", size=(64, 48), mode="L")
    chroma = {}
    for factor in ("0", "1", "1.5"):
        assert run(photo, "--model", weights, "--saturation", factor, "--output", tmp_path / factor).exit_code == 0
        lab = rgb2lab(np.asarray(Image.open(tmp_path / factor / "p_color.png")))
        chroma[factor] = float(np.hypot(lab[..., 1], lab[..., 2]).mean())
    assert chroma["0"] < 0.5  # gray, up to 8-bit rounding
    assert chroma["1.5"] > 1.2 * chroma["1"]
    # at the working size, every scaled colour is one sRGB can show at its lightness
    rng = np.random.default_rng(0)
    lum, ab = rng.uniform(5, 95, (40, 40)).astype(np.float32), rng.normal(0, 40, (2, 40, 40)).astype(np.float32)
    ab *= in_gamut(lum, ab)  # colours a network could predict
    assert in_gamut(lum, saturate(ab, lum, 1.5)).all()
    assert np.array_equal(saturate(ab, lum, 1.0), ab)


def test_a_negative_saturation_is_refused(tmp_path, tiny_weights):
    result = run(make_photo(tmp_path / "p.png", mode="L"), "--model", tiny_weights, "--saturation", "-1")
    assert result.exit_code == 2


def test_eval_sweeps_simulated_hints_and_the_oracle_reference(tmp_path, tiny_hint_weights):
    for i in range(3):
        make_photo(tmp_path / "truth" / f"t{i}.png", size=(40, 30), seed=i)
    result = run("eval", "--model", tiny_hint_weights, "--data", tmp_path / "truth", "--output", tmp_path / "rep",
                 "--hints", "0,3", "--reference", "truth", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(next(ln for ln in result.output.splitlines() if ln.startswith("{")))
    name = str(tiny_hint_weights)
    assert set(metrics) == {"gray", f"{name} +reference", f"{name} +3 hints +reference"}
    assert 0 <= metrics[f"{name} +3 hints +reference"]["hint_within5"] <= 1 and "hint_de2000" not in metrics["gray"]
    guide = json.loads((tmp_path / "rep" / "work" / "hints-3-reference.json").read_text())
    assert sorted(guide) == ["t0.png", "t1.png", "t2.png"] and all(len(e["points"]) == 3 for e in guide.values())
    again = run("eval", "--model", tiny_hint_weights, "--data", tmp_path / "truth", "--output", tmp_path / "rep2",
                "--hints", "3", "--reference", "truth")
    assert again.exit_code == 0
    again_guide = json.loads((tmp_path / "rep2" / "work" / "hints-3-reference.json").read_text())
    assert {k: e["points"] for k, e in again_guide.items()} == {k: e["points"] for k, e in guide.items()}  # seeded


def test_a_film_takes_a_reference_per_shot_from_a_file_of_times(tmp_path, tiny_hint_weights):
    import av
    from test_video import make_film

    film = make_film(tmp_path / "reel.mp4", frames=12, rate=12, audio=False)
    for name, colour in (("red.png", (200, 30, 30)), ("blue.png", (30, 40, 200))):
        Image.new("RGB", (32, 24), colour).save(tmp_path / name)
    (tmp_path / "shots.txt").write_text("# the shots of the reel\n0=red.png\n00:00.5=blue.png\n")
    runs = {"one": ["--reference", tmp_path / "red.png"], "shots": ["--reference", tmp_path / "shots.txt"]}
    frames = {}
    for key, args in runs.items():
        result = run(film, "--model", tiny_hint_weights, "--crf", "0", "--no-stabilize", "--output", tmp_path / key,
                     *args)
        assert result.exit_code == 0, result.output
        with av.open(str(tmp_path / key / "reel_color.mp4")) as c:
            frames[key] = [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]
    first = [np.abs(a - b).mean() for a, b in zip(frames["one"][:6], frames["shots"][:6])]
    later = [np.abs(a - b).mean() for a, b in zip(frames["one"][7:], frames["shots"][7:])]
    assert max(first) == 0 and min(later) > 0, (first, later)  # the blue shot's reference from 0.5 s on
    photo = make_photo(tmp_path / "p.png", mode="L")
    result = run(photo, "--model", tiny_hint_weights, "--reference", tmp_path / "shots.txt")
    assert result.exit_code == 2 and "is for films" in error_lines(result)[0]


def test_the_output_keeps_the_colour_given_at_each_point(tmp_path, tiny_hint_weights):
    """Whatever the network makes of a hint elsewhere, the pixel it was given for shows it: its a/b at the
    photo's own L (the gray photo's L is not the colour photo's: Pillow's gray is Rec. 601 luma)."""
    from skimage.color import deltaE_ciede2000

    colour = textured(96, 128, seed=7)
    Image.fromarray(colour).convert("L").save(tmp_path / "g.png")
    points = [(10, 12), (64, 48), (120, 90), (33, 70)]
    args = [a for x, y in points for a in ("--hint", f"{x},{y}=#{''.join(f'{v:02x}' for v in colour[y, x])}")]
    assert run(tmp_path / "g.png", "--model", tiny_hint_weights, *args).exit_code == 0
    out = np.asarray(Image.open(tmp_path / "g_color.png"))
    for x, y in points:
        got, told = rgb2lab(out[y, x][None, None] / 255), rgb2lab(colour[y, x][None, None] / 255)
        told[..., 0] = got[..., 0]
        assert deltaE_ciede2000(got, told) < 5


def test_a_hints_file_gives_what_the_same_hints_on_the_command_line_give(tmp_path, tiny_hint_weights):
    """colorize eval --hints N writes a hints file for the batch; one photo at a time with --hint, as a
    user would, gives the same pixels."""
    for i in range(2):
        make_photo(tmp_path / "in" / f"p{i}.png", size=(64, 48), mode="L", seed=i)
    told = {"p0.png": ["5,6=#c03020", "40,30=teal"], "p1.png": ["60,2=#20a040"]}
    (tmp_path / "h.json").write_text(json.dumps(told))
    assert run(tmp_path / "in", "--model", tiny_hint_weights, "--hints", tmp_path / "h.json",
               "--output", tmp_path / "batch").exit_code == 0
    for name, points in told.items():
        args = [a for p in points for a in ("--hint", p)]
        assert run(tmp_path / "in" / name, "--model", tiny_hint_weights, *args, "--output", tmp_path / "one").exit_code == 0
        stem = name.removesuffix(".png")
        assert np.array_equal(np.asarray(Image.open(tmp_path / "batch" / f"{stem}_color.png")),
                              np.asarray(Image.open(tmp_path / "one" / f"{stem}_color.png")))


def test_a_reference_sets_how_colourful_the_result_is():
    from colorize_cli.color import colorfulness, lab_to_pixels
    from colorize_cli.hints import match_colourfulness

    rng = np.random.default_rng(4)
    ab = rng.normal(0, 6, (2, 2, 24, 32)).astype(np.float32)  # two pale predictions
    lum = np.full((2, 24, 32), 55, np.float32)
    out = match_colourfulness(ab, lum, np.array([40.0, 0.0]))
    assert colorfulness(lab_to_pixels(lum[0], out[0], 255)) == pytest.approx(40, rel=0.05)  # the reference's CF
    assert np.array_equal(out[1], ab[1])  # no reference for the second: left alone
    hue = np.arctan2(ab[0, 1], ab[0, 0]), np.arctan2(out[0, 1], out[0, 0])
    assert np.abs(hue[0] - hue[1]).max() < 1e-4  # hues kept
    assert in_gamut(lum[0], out[0]).all()
