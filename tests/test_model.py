import numpy as np
import pytest

from mlrisk.config.params import parse_params
from mlrisk.config.train import LayerParams, TrainParams
from mlrisk.errors import ParamsError
from mlrisk.model.network import build_model, load_model, output_kind, save_model
from mlrisk.model.inference import p_up_from_output

ORIGINAL = {  # the original tool's network, as documented on the docs' train page
    "layers": [
        {"type": "lstm", "units": 96, "dropout": 0.2, "batch_norm": True},
        {"type": "lstm", "units": 96, "dropout": 0.3, "batch_norm": True},
        {"type": "lstm", "units": 96, "dropout": 0.3, "batch_norm": True},
    ],
    "dense": [20], "dense_dropout": 0.2, "output": "softmax", "optimizer": "adam", "learning_rate": 8e-5,
    "batch_size": 32, "patience": 4,
}


def test_recurrent_layers_return_sequences_except_the_last():
    tp = TrainParams(layers=[LayerParams(type="lstm", units=8), LayerParams(type="gru", units=4, dropout=0.1, batch_norm=True)], dense=[5])
    m = build_model(tp, seq_len=12, n_features=3)
    names = [layer.name for layer in m.layers]
    assert names == ["window", "lstm_0", "gru_1", "dropout_1", "batch_norm_1", "dense_0", "p_up"]
    assert m.get_layer("lstm_0").return_sequences and not m.get_layer("gru_1").return_sequences
    assert m.output_shape == (None, 1)
    out = m.predict(np.zeros((2, 12, 3), dtype="float32"), verbose=0)
    assert out.shape == (2, 1) and ((out > 0) & (out < 1)).all()


def test_the_original_network_is_expressible():
    tp = parse_params({"train": ORIGINAL}).train
    m = build_model(tp, seq_len=100, n_features=4, n_classes=2)
    assert m.output_shape == (None, 2)
    assert [type(layer).__name__ for layer in m.layers].count("LSTM") == 3
    assert [type(layer).__name__ for layer in m.layers].count("BatchNormalization") == 3
    assert m.get_layer("lstm_0").units == 96
    assert m.optimizer.learning_rate.numpy() == pytest.approx(8e-5)


def test_softmax_for_a_flat_class_and_sigmoid_refused():
    assert output_kind(TrainParams(), 3) == "softmax"
    m = build_model(TrainParams(layers=[LayerParams(units=4)], dense=[]), 5, 2, n_classes=3)
    assert m.output_shape == (None, 3)
    with pytest.raises(ValueError, match="cannot model 3 classes"):
        output_kind(TrainParams(output="sigmoid"), 3)


def test_bad_layer_params_are_rejected():
    with pytest.raises(ParamsError, match="train.layers.0.type"):
        parse_params({"train": {"layers": [{"type": "transformer", "units": 8}]}})
    with pytest.raises(ParamsError, match="train.layers"):
        parse_params({"train": {"layers": []}})


def test_p_up_from_each_output_kind():
    np.testing.assert_allclose(p_up_from_output(np.array([[0.3], [0.8]])), [0.3, 0.8])
    np.testing.assert_allclose(p_up_from_output(np.array([[0.7, 0.3]])), [0.3])
    np.testing.assert_allclose(p_up_from_output(np.array([[0.2, 0.6, 0.2]])), [0.75])  # up / (up + down)


def test_saved_model_file_is_reproducible_and_loads(tmp_path):
    """Same weights, same bytes: no save timestamps or Python object ids in the archive, so DVC
    sees an unchanged model when a retrain changes nothing."""
    import zipfile

    import keras

    models = []
    for _ in range(2):  # two separately built, identically seeded models: different Python objects
        keras.backend.clear_session()  # as in a fresh process: auto-generated names restart
        keras.utils.set_random_seed(7)
        models.append(build_model(TrainParams(layers=[LayerParams(units=4)], dense=[]), seq_len=5, n_features=3))
    model = models[0]
    save_model(models[0], tmp_path / "a.keras")
    save_model(models[1], tmp_path / "b.keras")
    a = (tmp_path / "a.keras").read_bytes()
    assert a == (tmp_path / "b.keras").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.keras") as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert b"date_saved" not in z.read("metadata.json")
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    np.testing.assert_array_equal(load_model(tmp_path / "a.keras").predict(x, verbose=0), model.predict(x, verbose=0))
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


@pytest.mark.parametrize("stack", [
    [{"type": "conv1d", "units": 6, "kernel_size": 4}],
    [{"type": "attention", "units": 4, "heads": 2}],
    [{"type": "conv1d", "units": 5}, {"type": "attention", "units": 3, "dropout": 0.1}, {"type": "gru", "units": 4}],
])
def test_conv1d_and_attention_layers_build_train_and_round_trip(stack, tmp_path):
    tp = parse_params({"train": {"layers": stack, "dense": [4]}}).train
    m = build_model(tp, seq_len=10, n_features=3)
    x = np.random.default_rng(0).normal(size=(64, 10, 3)).astype("float32")
    m.fit(x, (x[:, -1, 0] > 0).astype("float32"), epochs=1, verbose=0)
    save_model(m, tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-6)


def test_attention_and_conv1d_are_causal():
    """Changing the last step of the window must not change what the layer computed for earlier steps:
    checked through the output, which must depend on the last step (it is pooled over time)."""
    import keras

    for lp in ({"type": "conv1d", "units": 4, "kernel_size": 3}, {"type": "attention", "units": 4}):
        tp = parse_params({"train": {"layers": [lp, {"type": "lstm", "units": 2}], "dense": []}}).train
        m = build_model(tp, seq_len=8, n_features=2)
        seq = keras.Model(m.input, m.layers[1].output if lp["type"] == "conv1d" else m.get_layer("attention_norm_0").output)
        x = np.random.default_rng(1).normal(size=(1, 8, 2)).astype("float32")
        x2 = x.copy()
        x2[0, 5:] += 3.0
        a, b = seq.predict(x, verbose=0), seq.predict(x2, verbose=0)
        np.testing.assert_allclose(a[0, :5], b[0, :5], rtol=1e-5, atol=1e-6)
        assert not np.allclose(a[0, 5:], b[0, 5:])
