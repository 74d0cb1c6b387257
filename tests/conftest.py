import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run heavy tests marked slow")
    parser.addoption(
        "--tensorflow",
        action="store_true",
        default=False,
        help="run the Keras tests on the TensorFlow back end too (needs tensorflow: make test-keras-tf)",
    )


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--tensorflow"):
        skip_tf = pytest.mark.skip(reason="Keras on TensorFlow: use --tensorflow (make test-keras-tf)")
        for item in items:
            if item.get_closest_marker("tensorflow"):
                item.add_marker(skip_tf)
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="heavy run: use --runslow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
