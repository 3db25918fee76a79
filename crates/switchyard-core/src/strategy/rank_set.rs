//! An ordered set with `O(log n)` rank selection (a treap with subtree sizes).
//!
//! The random strategy needs "the i-th eligible worker in id order" in `O(log w)`, which
//! `BTreeSet` cannot do. Node priorities come from a fixed-seed generator, so the shape (and
//! therefore the cost) is deterministic.

use std::cmp::Ordering;

use crate::rng::SplitMix64;

/// An ordered set supporting insert, remove, membership and `select(i)` in `O(log n)` expected.
///
/// ```
/// use switchyard_core::strategy::RankSet;
/// let mut set = RankSet::new();
/// for x in [30, 10, 20] { set.insert(x); }
/// assert_eq!(set.select(0), Some(&10));
/// assert_eq!(set.select(2), Some(&30));
/// assert!(set.remove(&20));
/// assert_eq!(set.select(1), Some(&30));
/// ```
#[derive(Debug, Clone)]
pub struct RankSet<T> {
    root: Link<T>,
    rng: SplitMix64,
}

type Link<T> = Option<Box<Node<T>>>;

#[derive(Debug, Clone)]
struct Node<T> {
    key: T,
    priority: u64,
    size: usize,
    left: Link<T>,
    right: Link<T>,
}

fn size<T>(link: &Link<T>) -> usize {
    link.as_ref().map_or(0, |n| n.size)
}

impl<T> Node<T> {
    fn update(&mut self) {
        self.size = 1 + size(&self.left) + size(&self.right);
    }
}

impl<T: Ord> Default for RankSet<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Ord> RankSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        RankSet {
            root: None,
            rng: SplitMix64::new(0x5EED),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        size(&self.root)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    /// Whether `key` is in the set.
    pub fn contains(&self, key: &T) -> bool {
        let mut node = &self.root;
        while let Some(n) = node {
            match key.cmp(&n.key) {
                Ordering::Less => node = &n.left,
                Ordering::Greater => node = &n.right,
                Ordering::Equal => return true,
            }
        }
        false
    }

    /// The element of rank `index` (0-based, ascending), if `index < len`.
    pub fn select(&self, mut index: usize) -> Option<&T> {
        let mut node = &self.root;
        while let Some(n) = node {
            let left = size(&n.left);
            match index.cmp(&left) {
                Ordering::Less => node = &n.left,
                Ordering::Equal => return Some(&n.key),
                Ordering::Greater => {
                    index -= left + 1;
                    node = &n.right;
                }
            }
        }
        None
    }

    /// Inserts `key`; returns false if it was already present.
    pub fn insert(&mut self, key: T) -> bool {
        if self.contains(&key) {
            return false;
        }
        let priority = self.rng.next_u64();
        let (left, right) = split(self.root.take(), &key);
        let node = Box::new(Node {
            key,
            priority,
            size: 1,
            left: None,
            right: None,
        });
        self.root = merge(merge(left, Some(node)), right);
        true
    }

    /// Removes `key`; returns false if it was absent.
    pub fn remove(&mut self, key: &T) -> bool {
        let (removed, root) = remove(self.root.take(), key);
        self.root = root;
        removed
    }

    /// The elements in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        (0..self.len()).filter_map(move |i| self.select(i))
    }
}

/// Splits into (< key, ≥ key).
fn split<T: Ord>(link: Link<T>, key: &T) -> (Link<T>, Link<T>) {
    match link {
        None => (None, None),
        Some(mut n) => {
            if n.key < *key {
                let (l, r) = split(n.right.take(), key);
                n.right = l;
                n.update();
                (Some(n), r)
            } else {
                let (l, r) = split(n.left.take(), key);
                n.left = r;
                n.update();
                (l, Some(n))
            }
        }
    }
}

/// Merges two treaps where every key of `a` is below every key of `b`.
fn merge<T>(a: Link<T>, b: Link<T>) -> Link<T> {
    match (a, b) {
        (None, b) => b,
        (a, None) => a,
        (Some(mut a), Some(mut b)) => {
            if a.priority > b.priority {
                a.right = merge(a.right.take(), Some(b));
                a.update();
                Some(a)
            } else {
                b.left = merge(Some(a), b.left.take());
                b.update();
                Some(b)
            }
        }
    }
}

fn remove<T: Ord>(link: Link<T>, key: &T) -> (bool, Link<T>) {
    match link {
        None => (false, None),
        Some(mut n) => match key.cmp(&n.key) {
            Ordering::Equal => (true, merge(n.left.take(), n.right.take())),
            Ordering::Less => {
                let (removed, left) = remove(n.left.take(), key);
                n.left = left;
                n.update();
                (removed, Some(n))
            }
            Ordering::Greater => {
                let (removed, right) = remove(n.right.take(), key);
                n.right = right;
                n.update();
                (removed, Some(n))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn behaves_like_a_btreeset(ops in proptest::collection::vec((any::<bool>(), 0u16..64), 0..400)) {
            let mut ours = RankSet::new();
            let mut model = BTreeSet::new();
            for (insert, key) in ops {
                if insert {
                    prop_assert_eq!(ours.insert(key), model.insert(key));
                } else {
                    prop_assert_eq!(ours.remove(&key), model.remove(&key));
                }
                prop_assert_eq!(ours.len(), model.len());
            }
            let listed: Vec<u16> = ours.iter().copied().collect();
            let expected: Vec<u16> = model.iter().copied().collect();
            prop_assert_eq!(listed, expected);
            prop_assert_eq!(ours.select(model.len()), None);
        }
    }
}
