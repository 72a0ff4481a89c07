package cli

// version is this binary's version, "dev" unless set at build time:
//
//	go build -ldflags "-X github.com/sluice-io/sluice/internal/cli.version=v1.2.3" ./cmd/sluice
var version = "dev"
