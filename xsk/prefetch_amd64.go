package xsk

//go:noescape
func prefetchDescs(area *byte, descs *Desc, n int)

//go:noescape
func prefetchSpans(area *byte, descs *Desc, n int, maxLen int)
