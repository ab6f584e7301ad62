//! Reads of the grid roster: the `staff` table, which the write path keeps as the fold of the
//! roster events stored (`write::fold_staff`, last writer wins per grid and name by stamp;
//! `gridsync_core::roster` is the reference fold). Only active members are returned: a name
//! whose last event was a removal is not.

use gridsync_core::{Force, GridCode, NodeId, StaffEntry, Stamp};
use rusqlite::{params, OptionalExtension};

use crate::write::staff_stamp;
use crate::{Result, Store};

/// An active member of a grid's roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffMember {
    pub grid: GridCode,
    pub name: String,
    pub force: Force,
    pub phone: Option<String>,
    /// The node id of their handheld, if the roster names one.
    pub device: Option<NodeId>,
}

impl StaffMember {
    /// The member as a roster event writes them.
    pub fn entry(&self) -> StaffEntry {
        StaffEntry {
            name: self.name.clone(),
            force: self.force,
            phone: self.phone.clone(),
            device: self.device,
        }
    }
}

const COLUMNS: &str = "grid, name, force, phone, device, hlc_wall, hlc_logical, origin, seq";

type Row = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    (i64, i64, Vec<u8>, i64),
);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        (r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?),
    ))
}

impl Store {
    /// The active members of `grid`'s roster, or of every grid with `None`: by grid, then
    /// force (in `Force::ALL` order), then name.
    pub fn staff(&self, grid: Option<&GridCode>) -> Result<Vec<StaffMember>> {
        let rows = match grid {
            Some(g) => self.staff_rows(
                &format!("SELECT {COLUMNS} FROM staff WHERE removed = 0 AND grid = ?1"),
                params![g.as_str()],
            )?,
            None => self.staff_rows(
                &format!("SELECT {COLUMNS} FROM staff WHERE removed = 0"),
                params![],
            )?,
        };
        let mut out: Vec<StaffMember> = rows.into_iter().map(|(m, _)| m).collect();
        out.sort_by(|a, b| (&a.grid, a.force, &a.name).cmp(&(&b.grid, b.force, &b.name)));
        Ok(out)
    }

    /// The active member `name` of `grid`'s roster (names are compared byte for byte).
    pub fn staff_member(&self, grid: &GridCode, name: &str) -> Result<Option<StaffMember>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM staff WHERE removed = 0 AND grid = ?1 AND name = ?2"
            ))
            .map_err(self.err("reading the roster"))?;
        let found = stmt
            .query_row(params![grid.as_str(), name], row)
            .optional()
            .map_err(self.err("reading the roster"))?;
        found.map(|r| self.member(r).map(|(m, _)| m)).transpose()
    }

    /// The active member whose handheld is `device`. Should the roster name the device for
    /// several members, the one set last (the greatest stamp), as `Roster::of_device`.
    pub fn staff_of_device(&self, device: &NodeId) -> Result<Option<StaffMember>> {
        let rows = self.staff_rows(
            &format!("SELECT {COLUMNS} FROM staff WHERE removed = 0 AND device = ?1"),
            params![&device.0[..]],
        )?;
        Ok(rows
            .into_iter()
            .max_by_key(|(_, stamp)| *stamp)
            .map(|(m, _)| m))
    }

    fn staff_rows(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<(StaffMember, Stamp)>> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(self.err("reading the roster"))?;
        let rows = stmt
            .query_map(params, row)
            .map_err(self.err("reading the roster"))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(self.member(r.map_err(self.err("reading the roster"))?)?);
        }
        Ok(out)
    }

    /// A stored row as a member; text that does not parse is a corrupt row, never a panic.
    fn member(
        &self,
        (grid, name, force, phone, device, stamp): Row,
    ) -> Result<(StaffMember, Stamp)> {
        let grid = grid
            .parse::<GridCode>()
            .map_err(|e| self.corrupt(format!("a roster grid: {e}")))?;
        let force = force
            .ok_or_else(|| self.corrupt(format!("roster member {name:?} has no force")))?
            .parse::<Force>()
            .map_err(|e| self.corrupt(format!("roster member {name:?}: {e}")))?;
        let device = device
            .map(|d| self.bytes32(d, "a roster device").map(NodeId))
            .transpose()?;
        let stamp = staff_stamp(&self.path, stamp)?;
        Ok((
            StaffMember {
                grid,
                name,
                force,
                phone,
                device,
            },
            stamp,
        ))
    }
}

#[cfg(test)]
mod tests {
    use gridsync_core::{
        command, Category, Event, Hlc, IncidentId, IncidentState, Payload, Report, Roster, Severity,
    };

    use super::*;
    use crate::tests::{admitted, writer};

    const NOW: u64 = 1_764_000_000_000;
    const G: &str = "110101/002/014/03";
    const H: &str = "110101/002/015/01";

    fn grid(text: &str) -> GridCode {
        text.parse().expect("grid")
    }

    fn street() -> NodeId {
        NodeId::from_secret(&[7; 32])
    }

    fn district() -> NodeId {
        NodeId::from_secret(&[8; 32])
    }

    fn entry(name: &str, force: Force, device: Option<NodeId>) -> StaffEntry {
        StaffEntry {
            name: name.into(),
            force,
            phone: Some("13800000000".into()),
            device,
        }
    }

    /// A roster event by `origin` (its `seq`-th), at `NOW + ms`.
    fn roster_event(origin: NodeId, seq: u64, ms: u64, grid_code: &str, payload: Payload) -> Event {
        let mut w = writer(origin, "platform", seq, Hlc::default());
        let id = IncidentId::new_v7(NOW + ms, [seq as u8; 10]);
        w.write(id, &grid(grid_code), payload, NOW + ms)
    }

    fn set(origin: NodeId, seq: u64, ms: u64, grid_code: &str, e: StaffEntry) -> Event {
        let p = command::plan_staff_set(e).expect("a valid member");
        roster_event(origin, seq, ms, grid_code, p)
    }

    fn remove(origin: NodeId, seq: u64, ms: u64, grid_code: &str, name: &str) -> Event {
        let p = command::plan_staff_remove(name).expect("a valid name");
        roster_event(origin, seq, ms, grid_code, p)
    }

    fn names(members: &[StaffMember]) -> Vec<(&str, &str)> {
        members
            .iter()
            .map(|m| (m.grid.as_str(), m.name.as_str()))
            .collect()
    }

    /// The store's roster equals the core fold of the same events, whatever the order and
    /// the batches they came in.
    #[test]
    fn the_staff_table_is_the_roster_fold_in_any_order() {
        let pda = NodeId([0xd1; 32]);
        let events = vec![
            set(
                street(),
                1,
                0,
                G,
                entry("Wang Fang", Force::Police, Some(pda)),
            ),
            set(
                street(),
                2,
                10,
                G,
                entry("Li Wei", Force::Firefighter, None),
            ),
            set(district(), 1, 5, H, entry("Zhao Lei", Force::Manager, None)),
            remove(district(), 2, 20, G, "Li Wei"),
            set(street(), 3, 15, G, entry("Li Wei", Force::Supervisor, None)),
            set(
                district(),
                3,
                30,
                H,
                entry("Zhao Lei", Force::Assistant, Some(pda)),
            ),
        ];
        let roster = Roster::replay(&events);
        for order in [
            vec![0, 1, 2, 3, 4, 5],
            vec![5, 4, 3, 2, 1, 0],
            vec![3, 0, 5, 1, 4, 2],
        ] {
            let mut s = Store::in_memory().expect("store");
            for chunk in order.chunks(2) {
                let batch: Vec<Event> = chunk.iter().map(|i| events[*i].clone()).collect();
                s.append_received(&admitted(street(), &batch), &[])
                    .expect("stored");
            }
            let want: Vec<StaffMember> = roster
                .all()
                .into_iter()
                .map(|(g, e)| StaffMember {
                    grid: g.clone(),
                    name: e.name.clone(),
                    force: e.force,
                    phone: e.phone.clone(),
                    device: e.device,
                })
                .collect();
            assert_eq!(s.staff(None).expect("staff"), want, "{order:?}");
            assert_eq!(names(&want), [(G, "Wang Fang"), (H, "Zhao Lei")]);
            assert!(s.staff_member(&grid(G), "Li Wei").expect("read").is_none());
            assert_eq!(
                names(&s.staff(Some(&grid(H))).expect("staff")),
                [(H, "Zhao Lei")]
            );
            // The device is named for two members: the one set last.
            let me = s.staff_of_device(&pda).expect("read").expect("a member");
            assert_eq!((me.grid.as_str(), me.name.as_str()), (H, "Zhao Lei"));
            assert_eq!(me.force, Force::Assistant);
            // No incident row, nothing in `incidents()`; the events are stored all the same.
            let counts = s.counts().expect("counts");
            assert_eq!((counts.events, counts.incidents), (6, 0));
            assert!(s.incidents().expect("incidents").is_empty());
            for e in &events {
                assert!(s.has_event(&e.id()).expect("read"));
                assert!(s.incident(&e.incident).expect("read").is_none());
            }
        }
    }

    #[test]
    fn own_roster_events_change_no_incident_and_report_what_changed() {
        let mut s = Store::in_memory().expect("store");
        let first = set(street(), 1, 0, G, entry("Wang Fang", Force::Police, None));
        let out = s
            .append(std::slice::from_ref(&first), &[], None)
            .expect("append");
        assert_eq!((out.new_events, out.staff_changed), (1, 1));
        assert!(out.incidents.is_empty());
        // Again: a duplicate. An older write for the name: stored, but it loses.
        let out = s.append(&[first], &[], None).expect("append");
        assert_eq!((out.duplicate_events, out.staff_changed), (1, 0));
        let mut older = set(
            district(),
            1,
            0,
            G,
            entry("Wang Fang", Force::Judicial, None),
        );
        older.hlc = Hlc::new(NOW - 1, 0);
        crate::tests::resign(&mut older);
        let out = s.append(&[older], &[], None).expect("append");
        assert_eq!((out.new_events, out.staff_changed), (1, 0));
        let m = s
            .staff_member(&grid(G), "Wang Fang")
            .expect("read")
            .expect("active");
        assert_eq!(m.force, Force::Police);
        assert_eq!(m.entry().phone.as_deref(), Some("13800000000"));
    }

    /// A roster event that (carelessly or not) carries an incident's id is stored and folded
    /// into the roster, and the incident, as stored and as rebuilt from its events, is as if
    /// it had never come.
    #[test]
    fn a_roster_event_with_an_incidents_id_leaves_the_incident_alone() {
        let mut s = Store::in_memory().expect("store");
        let pda = NodeId::from_secret(&[9; 32]);
        let mut w = writer(pda, "patrol-7", 1, Hlc::default());
        let id = IncidentId::new_v7(NOW, [1; 10]);
        let report = Report {
            category: Category::from_catalogue("garbage").expect("category"),
            description: "Bags".into(),
            location: None,
            observed_at: None,
            severity: Severity::Normal,
        };
        let events: Vec<Event> = command::plan_report(report, vec![])
            .expect("report")
            .into_iter()
            .map(|p| w.write(id, &grid(G), p, NOW))
            .collect();
        s.append(&events, &[], None).expect("append");
        let before = s.incident(&id).expect("read").expect("stored");

        let mut hostile = set(street(), 1, 100, G, entry("Wang Fang", Force::Police, None));
        hostile.incident = id;
        crate::tests::resign(&mut hostile);
        let out = s
            .append_received(&admitted(street(), &[hostile]), &[])
            .expect("stored");
        assert!(out.incidents.is_empty());
        assert_eq!(out.staff_changed, 1);
        assert_eq!(s.incident(&id).expect("read"), Some(before.clone()));
        assert_eq!(s.events_of(&id).expect("events").len(), 2, "stored with it");
        assert_eq!(
            IncidentState::replay(id, &s.events_of(&id).expect("events")),
            before
        );
        // Spoil the stored state: the rebuild from events ignores the roster event too.
        s.conn
            .execute("UPDATE incidents SET state = x'00'", [])
            .expect("spoil");
        assert_eq!(s.incident(&id).expect("read"), Some(before));
        assert_eq!(s.staff(None).expect("staff").len(), 1);
    }

    #[test]
    fn an_unreadable_staff_row_is_a_corrupt_row() {
        let mut s = Store::in_memory().expect("store");
        s.append(
            &[set(
                street(),
                1,
                0,
                G,
                entry("Wang Fang", Force::Police, None),
            )],
            &[],
            None,
        )
        .expect("append");
        s.conn
            .execute("UPDATE staff SET force = 'astronaut'", [])
            .expect("spoil");
        assert!(matches!(
            s.staff(None),
            Err(crate::StoreError::CorruptRow { .. })
        ));
    }
}
