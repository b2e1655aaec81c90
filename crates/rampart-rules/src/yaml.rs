//! A YAML document tree whose every node knows where it starts in the source.
//!
//! yaml-rust2's event parser gives a marker (byte index, line, column) per event; its own `Yaml`
//! tree drops them, so this module builds a small tree that keeps them. Rule-file errors need
//! them: "rules.yaml:12:5: unknown key `condtion`".

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Where a node starts: 1-based line and column, and the byte offset in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: u32,
    pub col: u32,
    pub offset: usize,
}

impl Pos {
    fn from_marker(m: Marker) -> Pos {
        Pos {
            line: u32::try_from(m.line()).unwrap_or(u32::MAX),
            // yaml-rust2 columns are 0-based.
            col: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
            offset: m.index(),
        }
    }
}

/// How a scalar was written; block and quoted scalars are never "null" or numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Plain,
    Quoted,
    Block,
}

#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    Scalar(String, Style),
    Seq(Vec<Node>),
    /// Keys are kept in order; duplicate keys are kept too (the loader reports them).
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub pos: Pos,
}

impl Node {
    /// The scalar's text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    /// A plain `~`, `null` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar(s, Style::Plain) if s.is_empty() || s == "~" || s == "null" || s == "Null" || s == "NULL")
    }

    /// Short description of the node's type for error messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(..) if self.is_null() => "null",
            NodeKind::Scalar(..) => "a scalar",
            NodeKind::Seq(_) => "a sequence",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

enum Frame {
    Seq(Vec<Node>, Pos, usize),
    Map(Vec<(Node, Node)>, Option<Node>, Pos, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    docs: Vec<Node>,
    anchors: HashMap<usize, Node>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq(items, ..)) => items.push(node),
            Some(Frame::Map(entries, pending, ..)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from_marker(mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let style = match style {
                    TScalarStyle::Plain => Style::Plain,
                    TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => Style::Quoted,
                    TScalarStyle::Literal | TScalarStyle::Folded => Style::Block,
                };
                self.push_node(
                    Node {
                        kind: NodeKind::Scalar(text, style),
                        pos,
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(Vec::new(), pos, anchor)),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map(Vec::new(), None, pos, anchor))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(items, pos, anchor)) => (
                        Node {
                            kind: NodeKind::Seq(items),
                            pos,
                        },
                        anchor,
                    ),
                    // A block mapping's start marker is at its first `:`; its first key is
                    // where a reader looks for it.
                    Some(Frame::Map(entries, _, pos, anchor)) => (
                        Node {
                            pos: entries.first().map_or(pos, |(k, _)| k.pos),
                            kind: NodeKind::Map(entries),
                        },
                        anchor,
                    ),
                    None => return,
                };
                self.push_node(node, anchor);
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(mut node) => {
                    node.pos = pos;
                    self.push_node(node, 0);
                }
                None => {
                    if self.error.is_none() {
                        self.error = Some(SyntaxError {
                            pos,
                            message: "alias to an unknown anchor".into(),
                        });
                    }
                }
            },
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
    }
}

/// Parses every document of `text`. An empty file yields no documents.
pub(crate) fn parse(text: &str) -> Result<Vec<Node>, SyntaxError> {
    match parse_exact(text) {
        Err(e) if e.message == "invalid indentation" => {
            // yaml-rust2 (and saphyr) reject a flow collection whose closing bracket is on a line
            // of its own, indented no deeper than the key, after a quoted item:
            //     items: [
            //       "a", "b"
            //     ]
            // libyaml and yaml-cpp (Falco's parser) accept it and Falco's own rule files use it.
            // Indent such lone closing brackets further and parse again; no scalar changes, and
            // node offsets are mapped back to the original text.
            let (relaxed, inserted) = indent_lone_closers(text);
            if inserted.is_empty() {
                return Err(e);
            }
            let mut docs = parse_exact(&relaxed).map_err(|_| e)?;
            for d in &mut docs {
                unshift(d, &inserted);
            }
            Ok(docs)
        }
        other => other,
    }
}

/// Extra indentation added in front of lines holding only `]` or `}`: (offset in the relaxed
/// text where the line's content starts, bytes inserted before it so far).
fn indent_lone_closers(text: &str) -> (String, Vec<(usize, usize)>) {
    const PAD: &str = "                                ";
    let mut out = String::with_capacity(text.len() + 64);
    let mut inserted = Vec::new();
    let mut total = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_start_matches([' ', '\t']);
        let content = body.trim_end();
        let lone = content.starts_with([']', '}']) && {
            let rest = content.trim_start_matches([']', '}', ',', ' ', '\t']);
            rest.is_empty() || rest.starts_with('#')
        };
        if lone {
            out.push_str(PAD);
            total += PAD.len();
            inserted.push((out.len(), total));
        }
        out.push_str(line);
    }
    (out, inserted)
}

fn unshift(node: &mut Node, inserted: &[(usize, usize)]) {
    let before = inserted
        .iter()
        .take_while(|(at, _)| *at <= node.pos.offset)
        .last()
        .map_or(0, |(_, n)| *n);
    node.pos.offset -= before;
    match &mut node.kind {
        NodeKind::Scalar(..) => {}
        NodeKind::Seq(items) => items.iter_mut().for_each(|n| unshift(n, inserted)),
        NodeKind::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            unshift(k, inserted);
            unshift(v, inserted);
        }),
    }
}

fn parse_exact(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| SyntaxError {
        pos: Pos::from_marker(*e.marker()),
        message: e.info().to_string(),
    })?;
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder.docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_one_based_line_and_column() {
        let docs = parse("- rule: a\n  condition: >\n    x and\n    y\n").expect("parses");
        let NodeKind::Seq(items) = &docs[0].kind else {
            panic!("sequence expected")
        };
        let NodeKind::Map(entries) = &items[0].kind else {
            panic!("map expected")
        };
        assert_eq!((entries[0].0.pos.line, entries[0].0.pos.col), (1, 3));
        assert_eq!(entries[1].1.as_str(), Some("x and y\n"));
        assert_eq!(
            entries[1].1.pos.line, 3,
            "a block scalar starts at its first line"
        );
    }

    #[test]
    fn lone_closing_bracket_after_quoted_item_is_accepted() {
        let text = "- list: a\n  items: [\n    \"x\", \"y\"\n  ]\n- list: b\n  items: [z]\n";
        let docs = parse(text).expect("parses like libyaml");
        let NodeKind::Seq(items) = &docs[0].kind else {
            panic!("sequence expected")
        };
        let NodeKind::Map(entries) = &items[1].kind else {
            panic!("map expected")
        };
        // Offsets point into the original text.
        assert_eq!(&text[entries[0].1.pos.offset..][..1], "b");
        assert_eq!(entries[0].1.pos.line, 5);
    }

    #[test]
    fn syntax_error_has_a_position() {
        let err = parse("- rule: a\n  condition: [x\n").expect_err("bad yaml");
        assert!(err.pos.line >= 2, "{err:?}");
    }
}
