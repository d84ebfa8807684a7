import come
import come.world


def test_public_names_and_shipped_models_by_name():
    assert come.__version__ and come.WorldModel is come.world.WorldModel
    assert {"cards-tiny", "cards-stm", "maze-place"} <= set(come.shipped_models())
    model, cfg = come.load_model("cards-tiny")
    assert cfg.pose == "cursor" and not model.training
    world = come.WorldModel.from_pretrained("maze-place", rank=4)
    assert world.denoisers["place"] is world.base  # a model that takes views is its own place memory
    assert world.members("come") == ("ltm", "place")
    assert set(come.__all__) >= {"WorldModel", "Expert", "compose_eps", "load_model"}


def test_unknown_name_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        come.nope  # noqa: B018
