package connector

// KernelDrops is the kernel's drop count of the UDP socket on 127.0.0.1:port.
var KernelDrops = kernelDrops
