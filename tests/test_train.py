from pathlib import Path

import pytest
import torch
from conftest import make_photo
from typer.testing import CliRunner

from colorize_cli.app.data import BatchSampler, load_folder
from colorize_cli.app.train import TrainConfig, Trainer, TrainSetupError
from colorize_cli.cli import app
from colorize_cli.engine.networks import load_generator
from colorize_cli.models.losses import ColorRebalance


def _folder(root: Path, n: int = 6) -> Path:
    for i in range(n):
        make_photo(root / f"sub{i % 2}" / f"p{i}.png", size=(40, 40), seed=i)
    return root


def _batch(root: Path, size: int = 32, batch: int = 8):
    images = load_folder(root, 40).images
    return BatchSampler(images, size, batch, torch.Generator().manual_seed(0)).next()


def test_a_few_training_steps_lower_the_l1_loss(tmp_path):
    l_norm, ab = _batch(_folder(tmp_path / "data"))
    trainer = Trainer(TrainConfig(model="unet-sn", dataset="", output=str(tmp_path / "run")))
    first = trainer.train_step(l_norm, ab)
    for _ in range(40):
        last = trainer.train_step(l_norm, ab)
    assert trainer.step == 41
    assert last["loss_l1"] < 0.7 * first["loss_l1"]
    assert {"loss_d", "loss_adv", "loss_g"} <= set(last)


def test_resume_continues_exactly(tmp_path):
    data = _folder(tmp_path / "data")
    images = load_folder(data, 40).images

    def run(trainer: Trainer, steps: int) -> None:
        sampler = BatchSampler(images, 32, 4, trainer.rng)
        for _ in range(steps):
            trainer.train_step(*sampler.next())

    cfg = TrainConfig(model="unet-sn", dataset=str(data), output=str(tmp_path / "a"))
    straight = Trainer(cfg)
    run(straight, 4)

    first = Trainer(TrainConfig(model="unet-sn", dataset=str(data), output=str(tmp_path / "b")))
    run(first, 2)
    first.save_checkpoint()
    torch.manual_seed(123)  # a new process would start from another global RNG state
    second = Trainer(TrainConfig(model="unet-sn", dataset=str(data), output=str(tmp_path / "b")))
    second.resume()
    run(second, 2)
    for (k, a), b in zip(straight.generator.state_dict().items(), second.generator.state_dict().values()):
        assert torch.equal(a, b), k


def test_lr_decay_falls_linearly_over_the_last_steps_and_resumes_on_schedule(tmp_path):
    data = _folder(tmp_path / "data")
    images = load_folder(data, 40).images

    def config(out: str, **kw) -> TrainConfig:
        return TrainConfig(model="unet-sn", dataset=str(data), output=str(tmp_path / out), steps=6,
                           lr_decay_steps=4, **{"lr": 1e-3, **kw})

    def run(trainer: Trainer, steps: int) -> list[tuple[float, float]]:
        sampler, rates = BatchSampler(images, 32, 4, trainer.rng), []
        for _ in range(steps):
            trainer.train_step(*sampler.next())
            rates.append((trainer.opt_g.param_groups[0]["lr"], trainer.opt_d.param_groups[0]["lr"]))
        return rates

    expected = [1e-3, 1e-3, 1e-3, 0.75e-3, 0.5e-3, 0.25e-3]  # steps 1-2 at the rate, 3-6 the last four
    straight = run(Trainer(config("a")), 6)
    assert [g for g, _ in straight] == pytest.approx(expected)
    assert [d for _, d in straight] == pytest.approx(expected)  # the discriminator decays with it
    first = Trainer(config("b"))
    run(first, 4)
    first.save_checkpoint()  # its Adam state holds the decayed rate 0.75e-3
    second = Trainer(config("b"))
    second.resume()
    assert [g for g, _ in run(second, 2)] == pytest.approx(expected[4:])
    faster = Trainer(config("b", lr=2e-3))  # not config's 1e-3: a resumed run takes up a new --lr
    faster.resume()
    assert [g for g, _ in run(faster, 2)] == pytest.approx([2 * r for r in expected[4:]])
    with pytest.raises(TrainSetupError, match="^lr_decay_steps -1"):
        Trainer(TrainConfig(model="unet-sn", dataset="", output=str(tmp_path / "c"), lr_decay_steps=-1))


def test_rebalancing_weights_favour_rare_colours():
    ab = torch.zeros(1, 2, 10, 10)
    ab[0, :, 0, 0] = torch.tensor([0.5, -0.5])  # one saturated pixel among grays
    reb = ColorRebalance.fit(ab, strength=0.5)
    w = reb(ab)
    assert w[0, 0, 0, 0] > 5 * w[0, 0, 5, 5]
    assert abs(float(w.mean()) - 1.0) < 1e-4  # expectation 1 over the training pixels


def test_cli_train_skips_gray_and_broken_files_and_exports_loadable_weights(tmp_path):
    data = _folder(tmp_path / "data", n=4)
    make_photo(data / "gray.png", size=(40, 40), mode="L")
    (data / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "run"
    args = ["train", "--model", "unet-sn", "--dataset", str(data), "--output", str(out), "--steps", "4",
            "--batch-size", "2", "--size", "32", "--checkpoint-every", "2", "--val", str(data)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "4 colour photos of 6 files" in result.output
    assert "1 grayscale" in result.output and "1 unreadable" in result.output
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["step"] == 4 and set(state) >= {"generator", "discriminator", "opt_g", "opt_d", "config"}
    _model, config = load_generator(out / "unet-sn.safetensors")
    assert config["arch"] == "unet-sn" and config["step"] == 4
    assert all(t.dtype == torch.float16 for t in __import__("safetensors.torch").torch.load_file(
        str(out / "unet-sn.safetensors")).values() if t.is_floating_point())
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_0000002.png", "step_0000004.png"]
    # --resume continues to a larger step count
    result = CliRunner().invoke(app, [*args[:8], "6", *args[9:], "--resume"])
    assert result.exit_code == 0, result.output
    resumed = torch.load(out / "checkpoint.pt", weights_only=False)
    assert resumed["step"] == 6 and resumed["seconds"] > state["seconds"] > 0  # wall time adds up over runs
    assert load_generator(out / "unet-sn.safetensors")[1]["train_seconds"] == round(resumed["seconds"])


def test_cli_train_on_missing_folder_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["train", "--dataset", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "not a folder and not a known dataset name" in result.output


def test_resume_can_change_the_rebalancing_strength(tmp_path):
    data = _folder(tmp_path / "data", n=4)
    out = tmp_path / "run"
    base = ["train", "--dataset", str(data), "--output", str(out), "--batch-size", "2", "--size", "32",
            "--checkpoint-every", "2"]
    assert CliRunner().invoke(app, [*base, "--steps", "2", "--rebalance", "0.9"]).exit_code == 0
    assert torch.load(out / "checkpoint.pt", weights_only=False)["rebalance"] is not None
    result = CliRunner().invoke(app, [*base, "--steps", "4", "--rebalance", "0", "--resume"])
    assert result.exit_code == 0, result.output
    assert "colour rebalancing: 0.9 in the checkpoint, 0.0 from now on" in result.output
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["step"] == 4 and state["rebalance"] is None and state["config"]["rebalance"] == 0.0
    # what the network sees must not change under it: --equalize is checked, --blur may change
    result = CliRunner().invoke(app, [*base, "--steps", "6", "--equalize", "--resume"])
    assert result.exit_code == 1
    assert "checkpoint was trained with --equalize False, this run asks for True" in result.output
    result = CliRunner().invoke(app, [*base, "--steps", "6", "--blur", "--resume"])
    assert result.exit_code == 0 and "--blur: False in the checkpoint, True from now on" in result.output
    result = CliRunner().invoke(app, [*base, "--steps", "8", "--gan-loss", "lsgan", "--resume"])
    assert result.exit_code == 1 and "trained with --gan-loss bce, this run asks for lsgan" in result.output
    # naming the recipe's own loss is no change
    assert CliRunner().invoke(app, [*base, "--steps", "8", "--gan-loss", "bce", "--resume"]).exit_code == 0


def _torchrun(tmp_path, *args, model="unet-sn"):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "colorize_cli", "train", "--model", model, "--dataset", str(tmp_path / "data"),
           "--val", str(tmp_path / "data"), "--output", str(tmp_path / "run"), "--size", "32",
           "--threads", "1", "--checkpoint-every", "2", *args]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)


def test_torchrun_trains_data_parallel_on_two_processes_and_resumes(tmp_path):
    import json

    for i in range(6):
        make_photo(tmp_path / "data" / f"p{i}.png", size=(40, 40), seed=i)
    result = _torchrun(tmp_path, "--steps", "4", "--batch-size", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("data-parallel on 2 processes: 2 images each per step") == 1
    # rank 0 alone writes: one validation line per checkpoint, not one per process
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "val" in x] == [2, 4]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 4 and len(state["rng_ranks"]) == 2
    assert not torch.equal(state["rng_ranks"][0][0], state["rng_ranks"][1][0])  # each rank its own crops
    _, config = load_generator(tmp_path / "run" / "unet-sn.safetensors")
    assert config["step"] == 4
    result = _torchrun(tmp_path, "--steps", "6", "--batch-size", "4", "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed unet-sn at step 4" in result.stderr
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"] == 6
    # the global batch must split evenly
    result = _torchrun(tmp_path, "--steps", "8", "--batch-size", "5", "--resume")
    assert result.returncode == 1 and "--batch-size 5: must be a multiple of the 2 processes" in result.stderr


def test_amp_trains_in_bfloat16_autocast(tmp_path):
    for name in ("unet-sn", "pix2pix-wgangp", "vae"):
        torch.manual_seed(0)
        config = TrainConfig(model=name, dataset="", output=str(tmp_path / name), size=128 if "pix" in name else 32,
                             model_options={"width": 4}, amp=True,
                             discriminator_options={"width": 8} if name != "vae" else None)
        trainer = Trainer(config)
        assert trainer.amp and not trainer.channels_last  # channels-last is for CUDA
        before = [p.detach().clone() for p in trainer.generator.parameters()]
        size = config.size
        logs = trainer.train_step(torch.rand(2, 1, size, size) * 2 - 1, torch.rand(2, 2, size, size) * 0.6 - 0.3)
        assert all(torch.isfinite(torch.tensor(v)) for v in logs.values()), (name, logs)
        assert any(not torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters()))
        assert all(p.dtype == torch.float32 for p in trainer.generator.parameters())  # the weights stay fp32


def test_torchrun_trains_a_vae_and_a_wgangp_critic_data_parallel(tmp_path):
    # the VAE's training pass is reconstruct(), not forward(); the critic takes 5 steps and a double backward
    for i in range(4):
        make_photo(tmp_path / "data" / f"p{i}.png", size=(160, 160), seed=i)
    for model, size in (("vae", "32"), ("pix2pix-wgangp", "128")):
        result = _torchrun(tmp_path, "--steps", "2", "--batch-size", "4", "--size", size, "--output",
                           str(tmp_path / model), model=model)
        assert result.returncode == 0, (model, result.stderr[-3000:])
        assert torch.load(tmp_path / model / "checkpoint.pt", weights_only=False)["step"] == 2


def test_a_batch_too_small_for_a_batch_norm_bottleneck_is_a_clear_error(tmp_path):
    data = _folder(tmp_path / "data", n=2)
    result = CliRunner().invoke(app, ["train", "--model", "pix2pix", "--dataset", str(data), "--output",
                                      str(tmp_path / "run"), "--size", "128", "--batch-size", "1", "--steps", "1"])
    assert result.exit_code == 1
    assert "--batch-size 1 at --size 128: pix2pix's bottleneck is 1x1 with batch norm" in result.output


def test_init_starts_the_generator_from_given_weights_and_records_them(tmp_path):
    data = _folder(tmp_path / "data", n=4)
    base = ["train", "--dataset", str(data), "--steps", "2", "--batch-size", "2", "--size", "32",
            "--checkpoint-every", "2"]
    first = tmp_path / "first"
    result = CliRunner().invoke(app, [*base, "--model", "unet-sn", "--output", str(first)])
    assert result.exit_code == 0, result.output
    start, _ = load_generator(first / "unet-sn.safetensors")
    # a 0-step run from --init exports the given weights unchanged (fp16 in, fp16 out)
    same = Trainer(TrainConfig(model="unet-sn", dataset=str(data), output=str(tmp_path / "same"),
                               init=str(first / "unet-sn.safetensors")))
    for (k, a), b in zip(start.state_dict().items(), same.generator.state_dict().values()):
        assert torch.equal(a, b), k
    scratch = Trainer(TrainConfig(model="unet-sn", dataset=str(data), output=str(tmp_path / "scratch"), seed=5))
    assert not all(torch.equal(a, b) for a, b in zip(start.state_dict().values(),
                                                     scratch.generator.state_dict().values()))
    # unet-bn has unet-sn's generator: fine-tuning one from the other's weights works and is recorded
    tuned = tmp_path / "tuned"
    result = CliRunner().invoke(app, [*base, "--model", "unet-bn", "--output", str(tuned),
                                      "--init", str(first / "unet-sn.safetensors")])
    assert result.exit_code == 0, result.output
    assert load_generator(tuned / "unet-bn.safetensors")[1]["init"] == str(first / "unet-sn.safetensors")


def test_init_from_weights_of_another_architecture_is_one_clear_line(tmp_path):
    data = _folder(tmp_path / "data", n=4)
    first = tmp_path / "first"
    base = ["train", "--dataset", str(data), "--steps", "1", "--batch-size", "2", "--size", "32"]
    assert CliRunner().invoke(app, [*base, "--model", "unet-sn", "--output", str(first)]).exit_code == 0
    result = CliRunner().invoke(app, [*base, "--model", "resnet-patchgan", "--output", str(tmp_path / "b"),
                                      "--init", str(first / "unet-sn.safetensors")])
    assert result.exit_code == 1
    assert f"--init {first / 'unet-sn.safetensors'}: its weights do not fit resnet-patchgan" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, [*base, "--model", "unet-sn", "--output", str(tmp_path / "c"),
                                      "--init", "no-such-model"])
    assert result.exit_code == 1 and "--init no-such-model: unknown model 'no-such-model'" in result.output


def test_recon_loss_replaces_the_recipes_and_is_recorded_and_carded(tmp_path):
    import json

    from colorize_cli.models.colorspace import rgb_to_model_input
    from colorize_cli.models.describe import pretrained_parts

    l_norm, ab = rgb_to_model_input(torch.rand(2, 3, 224, 224))
    small = {"width": 4, "latent": 8}
    for loss, term in (("l1", "loss_l1"), ("mse", "loss_mse")):  # the autoencoder's recipe: 1.0 x MSE
        torch.manual_seed(0)
        trainer = Trainer(TrainConfig(model="autoencoder", dataset="", output=str(tmp_path / loss), size=224,
                                      model_options=small, recon_loss=loss))
        logs = trainer.train_step(l_norm, ab)
        assert logs["loss_g"] == pytest.approx(logs[term], rel=1e-5), (loss, logs)
    for model, loss in (("efflite-unet", "l1"), ("autoencoder", "l2")):  # a classifier; no such loss
        with pytest.raises(TrainSetupError, match=f"^recon_loss {loss}: use l1 or mse"):
            Trainer(TrainConfig(model=model, dataset="", output=str(tmp_path / "x"), size=64, recon_loss=loss,
                                pretrained=False))
    data = _folder(tmp_path / "data", n=2)
    for p in data.rglob("*.png"):
        make_photo(p, size=(280, 280))
    out = tmp_path / "run"
    args = ["train", "--model", "autoencoder", "--dataset", str(data), "--output", str(out), "--size", "224",
            "--batch-size", "2", "--steps", "1", "--model-option", "width=4", "--model-option", "latent=8"]
    result = CliRunner().invoke(app, [*args, "--recon-loss", "l1"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "autoencoder.json").read_text())
    assert saved["recon_loss"] == "l1"
    assert "- Reconstruction loss: L1 on ab, not the study's MSE (--recon-loss)" in pretrained_parts("autoencoder", saved)
    resumed = CliRunner().invoke(app, [*args[:-4], "--steps", "2", "--model-option", "width=4", "--model-option",
                                       "latent=8", "--resume"])
    assert "--recon-loss: l1 in the checkpoint, mse from now on" in resumed.output, resumed.output
    assert "recon_loss" not in json.loads((out / "autoencoder.json").read_text())
    assert not any("Reconstruction" in line for line in pretrained_parts("autoencoder", {}))
