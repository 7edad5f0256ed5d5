# Build recipes for the container image. `make -n image` prints the exact `docker build` command with the
# build args that fill the image's OCI and label-schema labels (see the Dockerfile).

IMAGE      ?= queue-workload
VERSION    ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
VCS_REF    ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
VCS_URL    ?= $(shell git remote get-url origin 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
TAG        ?= $(VERSION)

.PHONY: image image-push

## image: build the image, tagged $(IMAGE):$(TAG) and $(IMAGE):$(VCS_REF), labels filled from git and Cargo.toml
image:
	docker build \
		--build-arg VERSION=$(VERSION) \
		--build-arg VCS_REF=$(VCS_REF) \
		--build-arg VCS_URL=$(VCS_URL) \
		--build-arg BUILD_DATE=$(BUILD_DATE) \
		--tag $(IMAGE):$(TAG) \
		--tag $(IMAGE):$(VCS_REF) \
		--file Dockerfile \
		.

## image-push: push both tags (set IMAGE to your registry's repository first)
image-push: image
	docker push $(IMAGE):$(TAG)
	docker push $(IMAGE):$(VCS_REF)
