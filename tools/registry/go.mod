// Pinned OCI registry (go-containerregistry) for the tests of oci:// model fetches, and the local model store (modelstore/) that real pods fetch from.
module airt.dev/tools/registry

go 1.25.0

tool github.com/google/go-containerregistry/cmd/registry

require github.com/google/go-containerregistry v0.22.1
