//! The one answer every layer gives about a name — found, not found, busy,
//! unreachable — and the two pure rules that combine such answers
//! (ARCHITECTURE.md, "The resolution contract"):
//!
//! - [`over_replicas`]: the addresses of one cluster, asked in order;
//! - [`across_clusters`]: the clusters, in priority order.
//!
//! Both the resolver (what a phone gets) and `tftproxy locate` (what an
//! engineer reads) call these functions, so the two cannot disagree. The
//! module is a leaf: the upstream client, the resolver and the diagnosis
//! all depend on it, it depends on nothing.

use std::convert::Infallible;
use std::fmt;

/// What one party (an address, a cluster, the clusters together) answered
/// for a name. `F` is what a Found carries: a body and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Verdict<F> {
    /// It has the name.
    Found(F),
    /// It says the name does not exist there (authoritative).
    NotFound,
    /// It is overloaded and said so (HTTP 503): ask again later.
    Busy,
    /// It could not be asked or gave no usable answer.
    Unreachable,
}

/// A verdict that cannot be Found: what is known of a cluster that did not
/// serve the name. The type carries the invariant, so code that holds a
/// `Miss` never has to handle a Found.
pub type Miss = Verdict<Infallible>;

impl<F> Verdict<F> {
    /// Found or NotFound: the party knows, asking another replica would not
    /// change the answer.
    pub fn is_authoritative(&self) -> bool {
        matches!(self, Verdict::Found(_) | Verdict::NotFound)
    }

    pub fn is_found(&self) -> bool {
        matches!(self, Verdict::Found(_))
    }

    /// Transforms what a Found carries.
    pub fn map<G>(self, f: impl FnOnce(F) -> G) -> Verdict<G> {
        match self {
            Verdict::Found(found) => Verdict::Found(f(found)),
            Verdict::NotFound => Verdict::NotFound,
            Verdict::Busy => Verdict::Busy,
            Verdict::Unreachable => Verdict::Unreachable,
        }
    }

    /// A borrowed view of this verdict.
    pub fn as_ref(&self) -> Verdict<&F> {
        match self {
            Verdict::Found(found) => Verdict::Found(found),
            Verdict::NotFound => Verdict::NotFound,
            Verdict::Busy => Verdict::Busy,
            Verdict::Unreachable => Verdict::Unreachable,
        }
    }

    /// What a Found carries, or the miss it was instead.
    pub fn found(self) -> Result<F, Miss> {
        match self {
            Verdict::Found(found) => Ok(found),
            Verdict::NotFound => Err(Verdict::NotFound),
            Verdict::Busy => Err(Verdict::Busy),
            Verdict::Unreachable => Err(Verdict::Unreachable),
        }
    }
}

impl Miss {
    /// The same miss, as a verdict of any payload type.
    pub fn widen<F>(self) -> Verdict<F> {
        match self {
            Verdict::Found(never) => match never {},
            Verdict::NotFound => Verdict::NotFound,
            Verdict::Busy => Verdict::Busy,
            Verdict::Unreachable => Verdict::Unreachable,
        }
    }
}

/// `found (…)`, `not found`, `busy`, `unreachable`: how logs and `locate`
/// print a verdict (a Found prints what it carries).
impl<F: fmt::Display> fmt::Display for Verdict<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Found(found) => write!(f, "found ({found})"),
            Verdict::NotFound => f.write_str("not found"),
            Verdict::Busy => f.write_str("busy"),
            Verdict::Unreachable => f.write_str("unreachable"),
        }
    }
}

/// One cluster's replica addresses, answers listed in the order asked: the
/// first Found or NotFound decides (a Found with the index of the address
/// that served it); without one, any Busy makes the cluster Busy, else it
/// is Unreachable.
pub fn over_replicas<F>(answers: impl IntoIterator<Item = Verdict<F>>) -> Verdict<(usize, F)> {
    let mut busy = false;
    for (index, answer) in answers.into_iter().enumerate() {
        match answer {
            Verdict::Found(found) => return Verdict::Found((index, found)),
            Verdict::NotFound => return Verdict::NotFound,
            Verdict::Busy => busy = true,
            Verdict::Unreachable => {}
        }
    }
    if busy {
        Verdict::Busy
    } else {
        Verdict::Unreachable
    }
}

/// The clusters' verdicts so far, in priority order (`None`: not answered
/// yet). The highest-priority Found wins as soon as every higher-priority
/// cluster has answered — lower ones are never waited for. Once all have
/// answered without a Found: any Busy → Busy; else any Unreachable →
/// Unreachable; else NotFound. `None` while no decision is possible yet.
pub fn across_clusters<F>(verdicts: &[Option<Verdict<F>>]) -> Option<Verdict<(usize, &F)>> {
    for (index, verdict) in verdicts.iter().enumerate() {
        match verdict {
            None => return None,
            Some(Verdict::Found(found)) => return Some(Verdict::Found((index, found))),
            Some(_) => {}
        }
    }
    let any = |wanted: fn(&Verdict<F>) -> bool| verdicts.iter().flatten().any(wanted);
    Some(if any(|v| matches!(v, Verdict::Busy)) {
        Verdict::Busy
    } else if any(|v| matches!(v, Verdict::Unreachable)) {
        Verdict::Unreachable
    } else {
        Verdict::NotFound
    })
}

/// True when the cluster at `winner` won while a higher-priority cluster
/// was busy, unreachable or not yet answered: that cluster may hold the
/// name too, so the answer stands for this request only — it is neither
/// remembered as the name's location nor taken as a phone's home.
pub fn is_provisional<F>(verdicts: &[Option<Verdict<F>>], winner: usize) -> bool {
    verdicts[..winner]
        .iter()
        .any(|v| matches!(v, None | Some(Verdict::Busy | Verdict::Unreachable)))
}

#[cfg(test)]
mod tests {
    use super::*;

    use Verdict::{Busy, NotFound, Unreachable};

    fn found() -> Option<Verdict<&'static str>> {
        Some(Verdict::Found("x"))
    }

    #[test]
    fn highest_priority_found_wins_without_waiting_for_lower_ones() {
        assert_eq!(
            across_clusters(&[found(), None, None]),
            Some(Verdict::Found((0, &"x")))
        );
        assert_eq!(
            across_clusters(&[Some(NotFound), found(), None]),
            Some(Verdict::Found((1, &"x")))
        );
        assert_eq!(
            across_clusters(&[Some(Busy), found(), found()]),
            Some(Verdict::Found((1, &"x")))
        );
        assert_eq!(across_clusters(&[Some(Unreachable), None, found()]), None);
        assert_eq!(across_clusters(&[None, found()]), None);
    }

    #[test]
    fn without_a_found_busy_beats_unreachable_beats_not_found() {
        let decided = |v: &[Option<Verdict<&str>>]| across_clusters(v).map(|d| d.map(|_| ()));
        assert_eq!(
            decided(&[Some(NotFound), Some(Busy), Some(Unreachable)]),
            Some(Busy)
        );
        assert_eq!(
            decided(&[Some(Unreachable), Some(NotFound)]),
            Some(Unreachable)
        );
        assert_eq!(decided(&[Some(NotFound), Some(NotFound)]), Some(NotFound));
        assert_eq!(decided(&[Some(NotFound), None]), None);
        assert_eq!(decided(&[]), Some(NotFound));
    }

    #[test]
    fn a_win_behind_an_unsure_cluster_is_provisional() {
        let verdicts = [Some(NotFound), Some(Busy), found()];
        assert!(is_provisional(&verdicts, 2));
        assert!(!is_provisional(&verdicts, 0));
        assert!(!is_provisional(&[Some(NotFound), found()], 1));
        assert!(is_provisional(&[None, found()], 1));
    }

    #[test]
    fn the_first_authoritative_replica_decides() {
        assert_eq!(
            over_replicas([Unreachable, NotFound, Verdict::Found("x")]),
            NotFound
        );
        assert_eq!(
            over_replicas([Busy, Verdict::Found("x")]),
            Verdict::Found((1, "x"))
        );
        assert_eq!(over_replicas([Unreachable::<()>, Busy]), Busy);
        assert_eq!(over_replicas([Unreachable::<()>]), Unreachable);
        assert_eq!(over_replicas(Vec::<Verdict<()>>::new()), Unreachable);
    }

    #[test]
    fn a_miss_widens_to_any_verdict() {
        let miss: Miss = Verdict::Busy;
        let widened: Verdict<String> = miss.widen();
        assert_eq!(widened, Verdict::Busy);
        assert_eq!(Verdict::Found(3).found(), Ok(3));
        assert_eq!(Verdict::<u8>::NotFound.found(), Err(Verdict::NotFound));
    }
}
