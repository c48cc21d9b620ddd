package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// checkListen checks the listen addresses of run; errors name the flag.
func (r *runCmd) checkListen() error {
	if err := checkHostPort(r.NATSListen); err != nil {
		return fmt.Errorf("--nats-listen %q: %w", r.NATSListen, err)
	}
	if r.HTTPListen != "off" {
		if err := checkHostPort(r.HTTPListen); err != nil {
			return fmt.Errorf("--http-listen %q: %w (or 'off')", r.HTTPListen, err)
		}
	}
	if r.ClusterListen != "" {
		if err := checkHostPort(r.ClusterListen); err != nil {
			return fmt.Errorf("--cluster-listen %q: %w", r.ClusterListen, err)
		}
	}
	return nil
}

// checkHostPort refuses an address that is not host:port with a port
// from 0 to 65535 (the host may be empty: every interface).
func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port, such as 127.0.0.1:4222 or :4222")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q: want a number from 0 to 65535", port)
	}
	return nil
}
