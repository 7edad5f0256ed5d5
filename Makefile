# Build recipes for the container image. `make -n image` prints the exact `docker build` command with the
# build args that fill the image's OCI and label-schema labels (see the Dockerfile).

IMAGE      ?= queue-workload
VERSION    ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
VCS_REF    ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# The clone's origin remote; a clone without one names itself (file://…), still where the source came from.
VCS_URL    ?= $(shell git remote get-url origin 2>/dev/null || echo file://$(CURDIR))
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
TAG        ?= $(VERSION)
# The Docker client, the build context, and extra arguments: the engine tests build from a context holding
# prebuilt binaries on a locally made base, e.g.
#   make image CONTEXT=ctx BUILD_ARGS='--build-arg BINARIES=prebuilt --build-arg RUNTIME_IMAGE=my-base'
DOCKER     ?= docker
CONTEXT    ?= .
BUILD_ARGS ?=

.PHONY: image image-push

## image: build the image, tagged $(IMAGE):$(TAG) and $(IMAGE):$(VCS_REF), labels filled from git and Cargo.toml
image:
	DOCKER_BUILDKIT=1 $(DOCKER) build \
		--build-arg VERSION=$(VERSION) \
		--build-arg VCS_REF=$(VCS_REF) \
		--build-arg VCS_URL=$(VCS_URL) \
		--build-arg BUILD_DATE=$(BUILD_DATE) \
		--tag $(IMAGE):$(TAG) \
		--tag $(IMAGE):$(VCS_REF) \
		--file $(CURDIR)/Dockerfile \
		$(BUILD_ARGS) \
		$(CONTEXT)

## image-push: push both tags (set IMAGE to your registry's repository first)
image-push: image
	$(DOCKER) push $(IMAGE):$(TAG)
	$(DOCKER) push $(IMAGE):$(VCS_REF)
