package activity

// Wakes is how many times r, parked on its queue, was woken by an activity (rounds).
func Wakes(r *Register) uint64 { return r.wakes.Load() }
