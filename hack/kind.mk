# kind targets for users with Docker (included by the Makefile). They cannot run on the project's own
# machines (no Docker engine there); docs/install.md walks through them.

##@ kind (needs Docker and kind)

KIND ?= kind
KIND_CLUSTER ?= joch
KIND_CONTEXT := kind-$(KIND_CLUSTER)
IMAGE ?= ghcr.io/joch-dev/joch
TAG ?= dev
JOCH_NAMESPACE ?= joch-operator

.PHONY: kind-up
kind-up: ## Create the kind cluster of kind-config.yaml (once)
	@command -v docker >/dev/null || { echo "kind-up needs Docker"; exit 1; }
	$(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || $(KIND) create cluster --config kind-config.yaml --name $(KIND_CLUSTER)

.PHONY: kind-image
kind-image: ## Build the operator image ($(IMAGE):$(TAG)) and load it into the kind cluster
	docker build -t $(IMAGE):$(TAG) .
	$(KIND) load docker-image $(IMAGE):$(TAG) --name $(KIND_CLUSTER)

.PHONY: kind-deploy
kind-deploy: manifests kind-up kind-image ## Install joch into kind with Helm, apply examples/, wait for the Agent
	helm upgrade --install joch charts/joch --kube-context $(KIND_CONTEXT) \
	  --namespace $(JOCH_NAMESPACE) --create-namespace \
	  --set image.repository=$(IMAGE) --set image.tag=$(TAG) --set image.pullPolicy=Never \
	  --wait --timeout 5m
	kubectl --context $(KIND_CONTEXT) -n $(JOCH_NAMESPACE) rollout status deployment/joch --timeout=5m
	kubectl --context $(KIND_CONTEXT) apply -f examples/
	kubectl --context $(KIND_CONTEXT) wait --for=condition=Ready agent/support-triage -n support --timeout=120s
	kubectl --context $(KIND_CONTEXT) get joch -A

.PHONY: kind-down
kind-down: ## Delete the kind cluster
	$(KIND) delete cluster --name $(KIND_CLUSTER)
