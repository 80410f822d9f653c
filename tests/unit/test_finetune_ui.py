"""The web chat names the weights that answered: the model and the adapter, by short sha256."""

from appliance.generation import ModelIdentity
from ui.chat import model_html


def test_the_adapter_and_its_short_sha256_are_shown_under_the_answer() -> None:
    model = ModelIdentity(
        path="/models/gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec" + "0" * 48,
        adapter_path="/runs/faq-<b>lora.gguf",
        adapter_sha256="5154395df38a" + "1" * 52,
    )
    shown = model_html(model)
    assert "gemma-3-270m-q4_k_m.gguf (sha256 a5fd3b62230a)" in shown
    assert "adapter: faq-&lt;b&gt;lora.gguf (sha256 5154395df38a)" in shown
    plain = model_html(ModelIdentity(path="/models/m.gguf", sha256="ab" * 32))
    assert "adapter" not in plain and "m.gguf" in plain
    assert model_html(None) == "" and model_html(ModelIdentity(None, None)) == ""
