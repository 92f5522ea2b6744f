package connector

// OverflowedSocket is a UDP socket whose receive buffer overflowed, with the kernel's drop
// count (overflowedSocket).
var OverflowedSocket = overflowedSocket
