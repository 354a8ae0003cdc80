//go:build !linux

package flowtable

var hugePages = false

func adviseHugePages([]slot) {}
