# The two entry points the README opens with. Both set up what they need first.
.PHONY: example test setup setup-dev

example: setup
	.venv/bin/eenn-tvm analyze examples/fashion_mnist/resnet8.onnx

test: setup-dev
	.venv/bin/python -m pytest -q

setup:
	scripts/setup.sh

setup-dev:
	scripts/setup.sh --dev
