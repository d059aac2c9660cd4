//! The record a handler receives.

use bytes::Bytes;
use std::fmt;
use std::sync::Arc;

/// One Kafka record as delivered to a handler: its coordinates, key, payload,
/// headers and timestamp.
///
/// Cloning is cheap: the topic, key, payload and headers are reference counted.
#[derive(Clone)]
pub struct Message {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    /// Which run of offsets of its partition the record belongs to: a new
    /// one starts when the consumer rewinds (see the partition worker).
    pub(crate) generation: u32,
    pub(crate) offset: i64,
    pub(crate) key: Option<Bytes>,
    /// A hash of the key, computed once: ordering lanes are keyed by it.
    pub(crate) key_hash: u64,
    pub(crate) payload: Option<Bytes>,
    /// `None` when the record has no headers (no shared empty list whose
    /// reference count every record would touch).
    pub(crate) headers: Option<Arc<[Header]>>,
    /// Milliseconds since the epoch; [`NO_TIMESTAMP`] for none (not an
    /// `Option`: a `Message` stays within 128 bytes, which the compiler
    /// moves without a call to `memcpy`).
    pub(crate) timestamp: i64,
}

/// The timestamp of a record that has none.
pub(crate) const NO_TIMESTAMP: i64 = i64::MIN;

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.topic == other.topic
            && self.partition == other.partition
            && self.offset == other.offset
            && self.key == other.key
            && self.payload == other.payload
            && self.headers() == other.headers()
            && self.timestamp() == other.timestamp()
    }
}

impl Eq for Message {}

// Moved several times per record: kept small enough for inline moves.
const _: () = assert!(std::mem::size_of::<Message>() <= 128);

/// One record header. Kafka allows repeated names and null values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The header's name.
    pub name: String,
    /// The header's value; `None` for a null header.
    pub value: Option<Bytes>,
}

impl Message {
    /// Builds a record by hand, for unit tests of handler logic.
    ///
    /// ```
    /// let msg = dispatcher::Message::new("orders", 0, 42)
    ///     .with_key("customer-7")
    ///     .with_payload(r#"{"id":1}"#);
    /// assert_eq!(msg.offset(), 42);
    /// assert_eq!(msg.key(), Some(&b"customer-7"[..]));
    /// ```
    pub fn new(topic: impl Into<Arc<str>>, partition: i32, offset: i64) -> Self {
        Message {
            topic: topic.into(),
            partition,
            generation: 0,
            offset,
            key: None,
            key_hash: 0,
            payload: None,
            headers: None,
            timestamp: NO_TIMESTAMP,
        }
    }

    /// Sets the key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        let key = key.into();
        self.key_hash = key_hash(&key);
        self.key = Some(key);
        self
    }

    /// Sets the payload.
    #[must_use]
    pub fn with_payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.payload = Some(payload.into());
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        let mut headers = self.headers().to_vec();
        headers.push(Header {
            name: name.into(),
            value: Some(value.into()),
        });
        self.headers = Some(Arc::from(headers));
        self
    }

    /// Sets the timestamp, in milliseconds since the Unix epoch.
    #[must_use]
    pub fn with_timestamp(mut self, millis: i64) -> Self {
        self.timestamp = millis;
        self
    }

    /// The topic the record was read from.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition the record was read from.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The record's offset in its partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The record's key, if it has one.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// The record's key as shared bytes.
    pub fn key_bytes(&self) -> Option<&Bytes> {
        self.key.as_ref()
    }

    /// The record's payload; `None` for a tombstone.
    pub fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }

    /// The record's payload as shared bytes.
    pub fn payload_bytes(&self) -> Option<&Bytes> {
        self.payload.as_ref()
    }

    /// All headers, in the order the producer wrote them.
    pub fn headers(&self) -> &[Header] {
        self.headers.as_deref().unwrap_or_default()
    }

    /// The value of the last header called `name`, if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .iter()
            .rev()
            .find(|h| h.name == name)
            .and_then(|h| h.value.as_deref())
    }

    /// The record's timestamp in milliseconds since the Unix epoch, if the
    /// producer or broker set one.
    pub fn timestamp(&self) -> Option<i64> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }

    pub(crate) fn topic_arc(&self) -> &Arc<str> {
        &self.topic
    }

    /// The bytes the record holds: key, payload and headers.
    pub(crate) fn size(&self) -> usize {
        let headers = self
            .headers()
            .iter()
            .map(|h| h.name.len() + h.value.as_ref().map_or(0, Bytes::len))
            .sum::<usize>();
        self.key.as_ref().map_or(0, Bytes::len)
            + self.payload.as_ref().map_or(0, Bytes::len)
            + headers
    }
}

/// The hash ordering lanes use for a key.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(key);
    h.finish()
}

/// Shows the key as text when it is UTF-8, so log lines stay readable.
pub(crate) struct KeyDisplay<'a>(pub(crate) Option<&'a [u8]>);

impl fmt::Display for KeyDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("<none>"),
            Some(k) => match std::str::from_utf8(k) {
                Ok(s) => write!(f, "{s:?}"),
                Err(_) => {
                    f.write_str("0x")?;
                    k.iter().try_for_each(|b| write!(f, "{b:02x}"))
                }
            },
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("key", &format_args!("{}", KeyDisplay(self.key())))
            .field("payload_len", &self.payload.as_ref().map(Bytes::len))
            .field("headers", &self.headers().len())
            .field("timestamp", &self.timestamp())
            .finish()
    }
}
