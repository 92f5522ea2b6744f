package sharedmemory

// PendingSteps is how many steps of space wait for the batch in flight.
func (r *Redis) PendingSteps(space string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if q := r.queues[space]; q != nil {
		return len(q.pending)
	}
	return 0
}
