//! [`Receipt`]: proof of a lease, opaque to everyone but the backend that issued it.
//!
//! Why a boxed `Any` and not an enum of every backend's receipt: an enum here would name each backend (and
//! its fields) in the queue layer, and a compiled-out backend would leave a variant nobody can build. With a
//! box, each backend keeps its receipt type private in its own module, a new backend brings its own, and a
//! receipt handed to the wrong backend fails the downcast ([`Receipt::get`]) with a clear error instead of
//! being misread. The cost is one small allocation per delivery, next to the body's own `Vec` and a SQLite
//! transaction or a network round trip per batch; and a clone per ack, which Azure's two `String`s paid
//! already.

use std::any::Any;
use std::fmt;

use super::{ErrorKind, QueueError};

/// Proof of a lease, needed to ack, release or extend a message. Only the backend that issued it can read it.
pub struct Receipt(Box<dyn Handle>);

impl Receipt {
    /// Wraps a backend's own receipt value.
    pub fn new<T: Any + Send + Sync + fmt::Debug + Clone + PartialEq>(value: T) -> Receipt {
        Receipt(Box::new(value))
    }

    /// The backend's value, or an error when this receipt came from another backend.
    ///
    /// # Errors
    /// A receipt of another type (from another backend): a bug in the caller.
    pub fn get<T: Any>(&self) -> Result<&T, QueueError> {
        (*self.0).as_any().downcast_ref::<T>().ok_or_else(wrong)
    }

    /// The backend's value, to update in place (a backend that issues a new receipt on extend).
    ///
    /// # Errors
    /// As [`Receipt::get`].
    pub fn get_mut<T: Any>(&mut self) -> Result<&mut T, QueueError> {
        (*self.0).as_any_mut().downcast_mut::<T>().ok_or_else(wrong)
    }
}

fn wrong() -> QueueError {
    QueueError::new(ErrorKind::Other, "a receipt from another queue was used")
}

impl Clone for Receipt {
    fn clone(&self) -> Receipt {
        Receipt((*self.0).clone_box())
    }
}

impl PartialEq for Receipt {
    fn eq(&self, other: &Receipt) -> bool {
        (*self.0).eq_any((*other.0).as_any())
    }
}

impl Eq for Receipt {}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Receipt").field(&self.0).finish()
    }
}

/// What `Receipt` needs of a backend's value; implemented for every suitable type.
trait Handle: Any + Send + Sync + fmt::Debug {
    fn clone_box(&self) -> Box<dyn Handle>;
    fn eq_any(&self, other: &dyn Any) -> bool;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + Send + Sync + fmt::Debug + Clone + PartialEq> Handle for T {
    fn clone_box(&self) -> Box<dyn Handle> {
        Box::new(self.clone())
    }
    fn eq_any(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<T>() == Some(self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Mine(u32);
    #[derive(Clone, Debug, PartialEq)]
    struct Theirs(u32);

    #[test]
    fn only_the_issuing_type_reads_a_receipt() {
        let mut r = Receipt::new(Mine(7));
        assert_eq!(r.get::<Mine>().map(|m| m.0).ok(), Some(7));
        let e = r.get::<Theirs>().err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("a receipt from another queue was used"));
        let copy = r.clone();
        if let Ok(m) = r.get_mut::<Mine>() {
            m.0 = 8;
        }
        assert_ne!(r, copy, "the clone is its own value");
        assert_eq!(copy, Receipt::new(Mine(7)));
        assert_ne!(Receipt::new(Theirs(7)), Receipt::new(Mine(7)));
    }
}
