//go:build xskready

package main

const xskBuilt = true
