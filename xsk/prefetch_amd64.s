#include "textflag.h"

// A Desc is 16 bytes: Addr (8), Len (4), Options (4).

// func prefetchDescs(area *byte, descs *Desc, n int)
// PREFETCHT0 area+descs[i].Addr for i < n.
TEXT ·prefetchDescs(SB), NOSPLIT, $0-24
	MOVQ area+0(FP), AX
	MOVQ descs+8(FP), BX
	MOVQ n+16(FP), CX
	TESTQ CX, CX
	JLE done
loop:
	MOVQ (BX), DX
	PREFETCHT0 (AX)(DX*1)
	ADDQ $16, BX
	DECQ CX
	JNE loop
done:
	RET

// func prefetchSpans(area *byte, descs *Desc, n int, maxLen int)
// PREFETCHT0 every 64-byte line of area[descs[i].Addr : descs[i].Addr+min(descs[i].Len, maxLen)]
// for i < n (at least the first line, also for Len 0).
TEXT ·prefetchSpans(SB), NOSPLIT, $0-32
	MOVQ area+0(FP), AX
	MOVQ descs+8(FP), BX
	MOVQ n+16(FP), CX
	MOVQ maxLen+24(FP), R8
	TESTQ CX, CX
	JLE sdone
sloop:
	MOVQ (BX), DX
	MOVL 8(BX), DI
	CMPQ DI, R8
	CMOVQHI R8, DI      // a bad length costs at most one frame
	LEAQ (AX)(DX*1), SI // first byte
	ADDQ SI, DI         // end
	ANDQ $~63, SI       // its line
lines:
	PREFETCHT0 (SI)
	ADDQ $64, SI
	CMPQ SI, DI
	JB lines
	ADDQ $16, BX
	DECQ CX
	JNE sloop
sdone:
	RET
