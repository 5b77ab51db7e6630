# The two entry points the README opens with. Both set up what they need first.
.PHONY: example test live-demo setup setup-dev setup-tiers

FASHION = examples/fashion_mnist
LIVE = out/fm_tiers

example: setup $(FASHION)/train.npz
	.venv/bin/eenn-tvm augment $(FASHION)/resnet8.onnx --data $(FASHION)/train.npz --max-accuracy-drop 0.01 -o out/fashion_mnist
	.venv/bin/eenn-tvm run out/fashion_mnist --data $(FASHION)/test.npz
	.venv/bin/eenn-tvm map out/fashion_mnist --platform m4-edge
	.venv/bin/eenn-tvm build out/fashion_mnist --target cortex-m4 -o out/fashion_mnist_m4
	.venv/bin/eenn-tvm verify out/fashion_mnist_m4 --data $(FASHION)/test.npz --n 200

# The fast set: tests marked slow (more than about 20 s each) are left to .ci/run, which runs them all.
test: setup-dev
	.venv/bin/python -m pytest -q -m "not slow"

# A live deployment across tiers on this machine (docs/tiers.md): Mosquitto, the edge and cloud servers, and the
# device (the firmware in QEMU) on 200 test images over MQTT. The deployment is compiled once (minutes).
live-demo: setup-tiers $(LIVE)/plan.json
	scripts/live_demo.sh $(LIVE) $(FASHION)/test.npz 200

$(LIVE)/plan.json: | setup-tiers $(FASHION)/train.npz
	.venv/bin/eenn-tvm compile $(FASHION)/resnet8.onnx --data $(FASHION)/train.npz \
		--platform examples/tiers/m4-gateway-cloud.toml --max-latency-ms 1000 -o $(LIVE)

$(FASHION)/train.npz: | setup
	.venv/bin/python $(FASHION)/make_data.py

setup:
	scripts/setup.sh

setup-dev:
	scripts/setup.sh --dev

setup-tiers:
	scripts/setup.sh --tiers
