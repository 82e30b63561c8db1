package server

import (
	"math"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Config holds the gRPC serving settings, filled from flags by cmd/.
// Zero values take the defaults below.
type Config struct {
	// MaxRecvMsgSize bounds a request from a client (default 4 MiB).
	MaxRecvMsgSize int
	// MaxSendMsgSize bounds a response (default 64 MiB). Clients have their
	// own receive limit (grpc-go's default is 4 MiB; Envoy's is unbounded).
	MaxSendMsgSize int
	// MaxConcurrentStreams per client connection (default 100000).
	MaxConcurrentStreams uint32
	// KeepaliveTime is how long a connection may be idle before the server
	// pings it (default 30s); KeepaliveTimeout how long it waits for the
	// ping's answer before closing the connection (default 10s).
	KeepaliveTime    time.Duration
	KeepaliveTimeout time.Duration
	// KeepaliveMinTime is the shortest ping interval allowed to clients
	// (default 10s): clients pinging more often are disconnected.
	KeepaliveMinTime time.Duration
	// ShutdownGrace is how long Serve waits for streams to end after its
	// context is canceled before closing connections (default 5s).
	ShutdownGrace time.Duration
}

func (c Config) withDefaults() Config {
	if c.MaxRecvMsgSize <= 0 {
		c.MaxRecvMsgSize = 4 << 20
	}
	if c.MaxSendMsgSize <= 0 {
		c.MaxSendMsgSize = 64 << 20
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = 100000
	}
	if c.KeepaliveTime <= 0 {
		c.KeepaliveTime = 30 * time.Second
	}
	if c.KeepaliveTimeout <= 0 {
		c.KeepaliveTimeout = 10 * time.Second
	}
	if c.KeepaliveMinTime <= 0 {
		c.KeepaliveMinTime = 10 * time.Second
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 5 * time.Second
	}
	return c
}

func (c Config) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(c.MaxRecvMsgSize),
		grpc.MaxSendMsgSize(min(c.MaxSendMsgSize, math.MaxInt32)),
		grpc.MaxConcurrentStreams(c.MaxConcurrentStreams),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    c.KeepaliveTime,
			Timeout: c.KeepaliveTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             c.KeepaliveMinTime,
			PermitWithoutStream: true,
		}),
	}
}
