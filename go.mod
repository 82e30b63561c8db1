module github.com/sluice-mesh/sluice

go 1.26.0

require github.com/envoyproxy/go-control-plane v0.14.0

require google.golang.org/protobuf v1.36.12 // indirect
