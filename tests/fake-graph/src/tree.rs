//! A drive's item tree: lookups by name and path, ancestry, inserting, unlinking and removing
//! subtrees. Names are unique in a folder regardless of case, as in SharePoint.

use crate::world::{Drive, Item, Kind};

impl Drive {
    pub fn item(&self, id: &str) -> Option<&Item> {
        self.items.get(id)
    }

    pub fn child(&self, folder: &str, name: &str) -> Option<&Item> {
        match &self.items.get(folder)?.kind {
            Kind::Folder(children) => self.items.get(children.get(&name.to_lowercase())?),
            Kind::File { .. } => None,
        }
    }

    /// Follows `segments` (already percent-decoded) from `from`.
    pub fn walk(&self, from: &str, segments: &[String]) -> Option<&Item> {
        let mut item = self.items.get(from)?;
        for segment in segments {
            item = self.child(&item.id, segment)?;
        }
        Some(item)
    }

    /// Ids from the root down to `id`, both included.
    pub fn ancestry(&self, id: &str) -> Vec<String> {
        let mut chain = Vec::new();
        let mut current = self.items.get(id);
        while let Some(item) = current {
            chain.push(item.id.clone());
            current = item.parent.as_deref().and_then(|p| self.items.get(p));
        }
        chain.reverse();
        chain
    }

    /// The item's path below the root, `/a/b` (empty for the root).
    pub fn path_of(&self, id: &str) -> String {
        self.ancestry(id)
            .iter()
            .skip(1)
            .filter_map(|i| self.items.get(i))
            .map(|i| format!("/{}", i.name))
            .collect()
    }

    /// Adds `item` under its parent (which must be a folder without a child of that name).
    pub fn insert(&mut self, item: Item) {
        let parent = item.parent.clone().expect("an inserted item has a parent");
        if let Some(Item {
            kind: Kind::Folder(children),
            modified,
            ..
        }) = self.items.get_mut(&parent)
        {
            children.insert(item.name.to_lowercase(), item.id.clone());
            *modified = item.modified;
        }
        self.items.insert(item.id.clone(), item);
    }

    /// Moves and renames an item (which keeps its id): out of its parent's listing, into
    /// `parent`'s as `name`, a new version, modified `now`.
    pub fn relink(&mut self, id: &str, parent: &str, name: &str, now: i64) {
        self.unlink(id, now);
        let mut moved = self.items.remove(id).expect("the moved item exists");
        moved.name = name.to_owned();
        moved.parent = Some(parent.to_owned());
        moved.version += 1;
        moved.modified = now;
        self.insert(moved);
    }

    /// Takes the item out of its parent's listing (the item itself stays until removed).
    pub fn unlink(&mut self, id: &str, now: i64) {
        let Some(item) = self.items.get(id) else {
            return;
        };
        let (name, parent) = (item.name.to_lowercase(), item.parent.clone());
        if let Some(Item {
            kind: Kind::Folder(children),
            modified,
            ..
        }) = parent.and_then(|p| self.items.get_mut(&p))
        {
            children.remove(&name);
            *modified = now;
        }
    }

    /// Removes the item and everything below it.
    pub fn remove_tree(&mut self, id: &str, now: i64) {
        self.unlink(id, now);
        let mut stack = vec![id.to_owned()];
        while let Some(next) = stack.pop() {
            if let Some(Item {
                kind: Kind::Folder(children),
                ..
            }) = self.items.remove(&next)
            {
                stack.extend(children.into_values());
            }
        }
    }
}
