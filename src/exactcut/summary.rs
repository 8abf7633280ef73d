//! What one Data.fs says about its transactions above a floor: the
//! [`TagSummary`], read from a file or from the JSON another host exported
//! (`tidstorage tags FILE --since TID --format json`).
//!
//! Owns: finding the floor position, walking the transactions between the
//! floor and the end of ZODB's valid prefix (a `c` record, a torn or damaged
//! tail end it: what lies beyond is absent), reading each one's tag, and the
//! JSON form (docs/tags.md). Must not decide what to cut (that is
//! [`super::plan`]) nor write anything.

use std::path::Path;

use serde_json::{json, Value};

use crate::datafs::extension::{read_tag, Tag};
use crate::datafs::layout::FIRST_TXN;
use crate::datafs::{Corruption, DataFs, Error, TxnHeader};
use crate::tid::Tid;

/// The `format` field of the JSON form.
pub const FORMAT: &str = "tidstorage-tags/1";

/// Where the consistent part ends, as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorSpec {
    /// A TID known to be consistent on this storage (a coherency point's,
    /// a backup manifest's, `--since`): the floor is the cut position for
    /// it.
    Tid(Tid),
    /// No known point: the history before the file's first tagged
    /// transaction is taken as it is (written before tagging began).
    FirstTagged,
}

/// How the floor was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorKind {
    /// From a TID given by the caller.
    Given,
    /// Just before the first tagged transaction (no TID given).
    FirstTagged,
    /// No TID given and no tagged transaction in the file: all of it is
    /// kept as it is.
    NoTags,
}

impl FloorKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            FloorKind::Given => "given",
            FloorKind::FirstTagged => "first-tagged",
            FloorKind::NoTags => "no-tags",
        }
    }

    fn parse(s: &str) -> Option<FloorKind> {
        Some(match s {
            "given" => FloorKind::Given,
            "first-tagged" => FloorKind::FirstTagged,
            "no-tags" => FloorKind::NoTags,
            _ => return None,
        })
    }
}

/// The floor of one storage: nothing at or before `position` is ever cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floor {
    pub kind: FloorKind,
    /// With [`FloorKind::Given`], the TID asked for; otherwise the TID of
    /// the last transaction before the floor (`None`: none).
    pub tid: Option<Tid>,
    /// Offset just after the last transaction at or below the floor.
    pub position: u64,
}

/// What a transaction's extension says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagState {
    Tagged(Tag),
    /// No tag key: a commit from a client that does not tag (or none).
    Untagged,
    /// An extension or a tag value that cannot be read: unknown too.
    Unreadable(String),
}

/// One transaction above the floor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnInfo {
    pub tid: Tid,
    /// Offset of its header.
    pub pos: u64,
    /// Offset just after it.
    pub end: u64,
    pub tag: TagState,
}

/// One storage's transactions above its floor, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSummary {
    /// The configured `[[storage]] id`.
    pub storage: String,
    /// The file it was read from (informative on another host).
    pub data_fs: String,
    pub size: u64,
    /// End of the prefix ZODB reads; every transaction listed ends at or
    /// before it.
    pub valid_end: u64,
    /// What lies at `valid_end` when the file does not end there (a `c`
    /// record, a torn transaction, garbage).
    pub damage: Option<String>,
    pub floor: Floor,
    pub transactions: Vec<TxnInfo>,
}

fn tag_of(fs: &DataFs, h: &TxnHeader) -> Result<TagState, Error> {
    let ext = fs.read_extension(h)?;
    Ok(match read_tag(&ext) {
        Ok(Some(t)) => TagState::Tagged(t),
        Ok(None) => TagState::Untagged,
        Err(e) => TagState::Unreadable(e.to_string()),
    })
}

impl TagSummary {
    /// Reads the transactions of `fs` above the floor. With a TID floor it
    /// costs O(bytes above the floor) (a backward walk from the end through
    /// the redundant lengths; a forward walk from the floor if that meets
    /// damage); [`FloorSpec::FirstTagged`] reads every transaction header
    /// of the file.
    pub fn read(fs: &DataFs, storage: &str, spec: FloorSpec) -> Result<TagSummary, Error> {
        let vp = fs.valid_prefix()?;
        let end = vp.end;
        let (floor, transactions) = match spec {
            FloorSpec::Tid(t) => {
                let c = fs.cut_position(t)?;
                let floor = Floor {
                    kind: FloorKind::Given,
                    tid: Some(t),
                    position: c.position,
                };
                let txns = match walk_backward(fs, c.position, end)? {
                    Some(v) => v,
                    None => walk_forward(fs, c.position, end, false)?.1,
                };
                (floor, txns)
            }
            FloorSpec::FirstTagged => {
                let (before, txns) = walk_forward(fs, FIRST_TXN, end, true)?;
                match txns.first() {
                    Some(first) => (
                        Floor {
                            kind: FloorKind::FirstTagged,
                            tid: before,
                            position: first.pos,
                        },
                        txns,
                    ),
                    None => (
                        Floor {
                            kind: FloorKind::NoTags,
                            tid: vp.last_tid,
                            position: end,
                        },
                        txns,
                    ),
                }
            }
        };
        Ok(TagSummary {
            storage: storage.to_string(),
            data_fs: fs.path().display().to_string(),
            size: fs.size(),
            valid_end: end,
            damage: vp.damage.map(|e| e.to_string()),
            floor,
            transactions,
        })
    }

    /// Like [`Self::read`], opening `path` read-only.
    pub fn read_file(path: &Path, storage: &str, spec: FloorSpec) -> Result<TagSummary, Error> {
        TagSummary::read(&DataFs::open(path)?, storage, spec)
    }

    /// The JSON form (docs/tags.md). TIDs and commit ids are hex strings:
    /// many JSON readers lose precision above 2^53.
    pub fn to_json(&self) -> Value {
        let txns: Vec<Value> = self
            .transactions
            .iter()
            .map(|t| {
                let mut v = json!({"tid": t.tid.hex(), "pos": t.pos, "end": t.end});
                match &t.tag {
                    TagState::Tagged(tag) => v["tag"] = Value::String(tag.render()),
                    TagState::Untagged => v["tag"] = Value::Null,
                    TagState::Unreadable(why) => {
                        v["tag"] = Value::Null;
                        v["error"] = Value::String(why.clone());
                    }
                }
                v
            })
            .collect();
        json!({
            "format": FORMAT,
            "storage": self.storage,
            "data_fs": self.data_fs,
            "size": self.size,
            "valid_end": self.valid_end,
            "damage": self.damage,
            "floor": {
                "kind": self.floor.kind.as_str(),
                "tid": self.floor.tid.map(|t| t.hex()),
                "position": self.floor.position,
            },
            "transactions": txns,
        })
    }

    /// Reads the JSON form back; the error names the field.
    pub fn from_json(v: &Value) -> Result<TagSummary, String> {
        let field = |o: &Value, k: &str| -> Result<Value, String> {
            o.get(k)
                .cloned()
                .ok_or_else(|| format!("missing field {k:?}"))
        };
        let string = |o: &Value, k: &str| -> Result<String, String> {
            field(o, k)?
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("field {k:?} is not a string"))
        };
        let num = |o: &Value, k: &str| -> Result<u64, String> {
            field(o, k)?
                .as_u64()
                .ok_or_else(|| format!("field {k:?} is not a non-negative integer"))
        };
        let hex_tid = |s: &str, k: &str| -> Result<Tid, String> {
            if s.len() != 16 {
                return Err(format!("field {k:?}: {s:?} is not 16 hex digits"));
            }
            u64::from_str_radix(s, 16)
                .map(Tid)
                .map_err(|_| format!("field {k:?}: {s:?} is not 16 hex digits"))
        };
        let format = string(v, "format")?;
        if format != FORMAT {
            return Err(format!(
                "format {format:?} is not {FORMAT:?} (written by another version of tidstorage?)"
            ));
        }
        let f = field(v, "floor")?;
        let kind_s = string(&f, "kind")?;
        let kind =
            FloorKind::parse(&kind_s).ok_or_else(|| format!("floor kind {kind_s:?} is unknown"))?;
        let tid = match field(&f, "tid")? {
            Value::Null => None,
            Value::String(s) => Some(hex_tid(&s, "floor.tid")?),
            _ => return Err("field \"floor.tid\" is neither null nor a string".into()),
        };
        let floor = Floor {
            kind,
            tid,
            position: num(&f, "position")?,
        };
        let damage = match field(v, "damage")? {
            Value::Null => None,
            Value::String(s) => Some(s),
            _ => return Err("field \"damage\" is neither null nor a string".into()),
        };
        let list = field(v, "transactions")?;
        let list = list
            .as_array()
            .ok_or("field \"transactions\" is not a list")?;
        let mut transactions = Vec::with_capacity(list.len());
        for (i, t) in list.iter().enumerate() {
            let at = |e: String| format!("transaction {i}: {e}");
            let tid = hex_tid(&string(t, "tid").map_err(at)?, "tid").map_err(at)?;
            let tag = match field(t, "tag").map_err(at)? {
                Value::String(s) => match Tag::parse(&s) {
                    Ok(tag) => TagState::Tagged(tag),
                    Err(e) => return Err(at(e)),
                },
                Value::Null => match t.get("error") {
                    Some(Value::String(e)) => TagState::Unreadable(e.clone()),
                    _ => TagState::Untagged,
                },
                _ => return Err(at("field \"tag\" is neither null nor a string".into())),
            };
            transactions.push(TxnInfo {
                tid,
                pos: num(t, "pos").map_err(at)?,
                end: num(t, "end").map_err(at)?,
                tag,
            });
        }
        let s = TagSummary {
            storage: string(v, "storage")?,
            data_fs: string(v, "data_fs")?,
            size: num(v, "size")?,
            valid_end: num(v, "valid_end")?,
            damage,
            floor,
            transactions,
        };
        s.check()?;
        Ok(s)
    }

    /// The invariants [`Self::read`] guarantees, checked on imported
    /// summaries: transactions back to back from the floor, tids
    /// increasing, all within the valid prefix.
    pub fn check(&self) -> Result<(), String> {
        let mut pos = self.floor.position;
        let mut last: Option<Tid> = None;
        if self.valid_end > self.size || self.floor.position > self.valid_end {
            return Err(format!(
                "floor position {} / valid end {} / size {} are out of order",
                self.floor.position, self.valid_end, self.size
            ));
        }
        for t in &self.transactions {
            if t.pos != pos || t.end <= t.pos || t.end > self.valid_end {
                return Err(format!(
                    "transaction {} at {}..{} does not follow offset {pos} within the valid end {}",
                    t.tid.hex(),
                    t.pos,
                    t.end,
                    self.valid_end
                ));
            }
            if last.is_some_and(|l| t.tid <= l) {
                return Err(format!(
                    "transaction {} is not above the previous one",
                    t.tid.hex()
                ));
            }
            last = Some(t.tid);
            pos = t.end;
        }
        if pos != self.valid_end {
            return Err(format!(
                "transactions end at {pos}, not at the valid end {}",
                self.valid_end
            ));
        }
        Ok(())
    }
}

/// One summary per `(storage id, Data.fs)`, each with its floor from
/// `point` (the storage's TID there; [`FloorSpec::FirstTagged`] for a
/// storage the point does not have). Every file is read; the failures are
/// returned together, by storage id.
pub fn read_storages<'a>(
    storages: impl IntoIterator<Item = (&'a str, &'a Path)>,
    point: &std::collections::BTreeMap<String, Tid>,
) -> Result<Vec<TagSummary>, Vec<(String, Error)>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (id, path) in storages {
        let spec = point
            .get(id)
            .map(|t| FloorSpec::Tid(*t))
            .unwrap_or(FloorSpec::FirstTagged);
        match TagSummary::read_file(path, id, spec) {
            Ok(s) => out.push(s),
            Err(e) => errors.push((id.to_string(), e)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The transactions between `from` and `end` (both transaction bounds),
/// walking back from `end`; `None` when the walk meets something it cannot
/// follow (the forward walk decides then).
fn walk_backward(fs: &DataFs, from: u64, end: u64) -> Result<Option<Vec<TxnInfo>>, Error> {
    let mut out = Vec::new();
    let mut pos = end;
    for h in fs.iter_backward_from(end) {
        if pos <= from {
            break;
        }
        let Ok(h) = h else { return Ok(None) };
        if h.end() != pos || h.pos < from {
            return Ok(None);
        }
        out.push(TxnInfo {
            tid: h.tid,
            pos: h.pos,
            end: h.end(),
            tag: tag_of(fs, &h)?,
        });
        pos = h.pos;
    }
    if pos != from {
        return Ok(None);
    }
    out.reverse();
    if out.windows(2).any(|w| w[0].tid >= w[1].tid) {
        return Ok(None);
    }
    Ok(Some(out))
}

/// The transactions from `from` to `end`, walking forward. With
/// `from_first_tagged`, those before the first tagged one are skipped and
/// the TID of the last skipped one is returned.
fn walk_forward(
    fs: &DataFs,
    from: u64,
    end: u64,
    from_first_tagged: bool,
) -> Result<(Option<Tid>, Vec<TxnInfo>), Error> {
    let mut out = Vec::new();
    let mut before = None;
    let mut pos = from;
    let mut previous: Option<Tid> = None;
    while pos < end {
        let h = fs.read_txn_header(pos)?;
        fs.check_trailer(&h)?;
        pos = h.end();
        // ZODB reads on past a tid that does not increase (it logs); an
        // exact cut cannot order such a file, so it is damage here.
        if let Some(p) = previous.filter(|p| h.tid <= *p) {
            return Err(fs.corrupt(
                h.pos,
                Corruption::TidNotIncreasing {
                    tid: h.tid,
                    previous: p,
                },
            ));
        }
        previous = Some(h.tid);
        let tag = tag_of(fs, &h)?;
        if from_first_tagged && out.is_empty() && !matches!(tag, TagState::Tagged(_)) {
            before = Some(h.tid);
            continue;
        }
        out.push(TxnInfo {
            tid: h.tid,
            pos: h.pos,
            end: h.end(),
            tag,
        });
    }
    Ok((before, out))
}
