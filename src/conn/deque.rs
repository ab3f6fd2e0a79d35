//! [`Deque`]: a `VecDeque` whose drop costs one test when it never
//! allocated — as most of a short connection's queues never do (its read
//! requests, its events held back by a full channel, its write queue once
//! given back to the worker's pool). Dropping a plain `VecDeque` calls
//! its drop glue even then: a few dozen instructions per queue, per
//! connection.

use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};

pub(crate) struct Deque<T>(ManuallyDrop<VecDeque<T>>);

impl<T> Deque<T> {
    pub(crate) const fn new() -> Self {
        Deque(ManuallyDrop::new(VecDeque::new()))
    }

    /// The queue itself (to give its allocation back to a pool).
    pub(crate) fn into_inner(mut self) -> VecDeque<T> {
        // What stays behind is empty and unallocated: `drop` skips it.
        std::mem::take(&mut *self.0)
    }
}

impl<T> From<VecDeque<T>> for Deque<T> {
    fn from(q: VecDeque<T>) -> Self {
        Deque(ManuallyDrop::new(q))
    }
}

impl<T> Default for Deque<T> {
    fn default() -> Self {
        Deque::new()
    }
}

impl<T> Drop for Deque<T> {
    #[inline]
    fn drop(&mut self) {
        // No capacity: no allocation and no element, nothing to release
        // (a queue of zero-sized elements reports `usize::MAX` and is
        // dropped). Otherwise the queue is moved out and dropped; the
        // empty one left in its place owns nothing.
        if self.0.capacity() > 0 {
            drop(std::mem::take(&mut *self.0));
        }
    }
}

impl<T> Deref for Deque<T> {
    type Target = VecDeque<T>;
    #[inline]
    fn deref(&self) -> &VecDeque<T> {
        &self.0
    }
}

impl<T> DerefMut for Deque<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut VecDeque<T> {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Deque;
    use std::rc::Rc;

    #[test]
    fn elements_are_dropped_with_the_queue_and_none_twice() {
        let token = Rc::new(());
        {
            let mut q = Deque::new();
            for _ in 0..10 {
                q.push_back(token.clone());
            }
            q.pop_front();
            assert_eq!(Rc::strong_count(&token), 10);
        }
        assert_eq!(Rc::strong_count(&token), 1);
        // Emptied but allocated, and never allocated: nothing left either.
        let mut q = Deque::new();
        q.push_back(token.clone());
        q.clear();
        drop(q);
        drop(Deque::<Rc<()>>::new());
        // Given away whole, the elements go with it.
        let mut q = Deque::new();
        q.push_back(token.clone());
        let inner = q.into_inner();
        assert_eq!(Rc::strong_count(&token), 2);
        drop(inner);
        assert_eq!(Rc::strong_count(&token), 1);
        // Zero-sized elements report a capacity and are dropped too.
        let mut z = Deque::new();
        z.push_back(());
        drop(z);
    }
}
