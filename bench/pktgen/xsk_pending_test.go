//go:build !xskready

package main

// xskBuilt is false until package xsk's sockets land (TEMPORARY: removed then).
const xskBuilt = false
