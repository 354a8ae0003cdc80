//go:build !amd64

package xsk

func prefetchDescs(area *byte, descs *Desc, n int)             {}
func prefetchSpans(area *byte, descs *Desc, n int, maxLen int) {}
