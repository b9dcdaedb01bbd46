use proptest::prelude::*;

use super::*;

/// An image: marker, then `models` (ID, L) with zero bodies, then the end.
fn image(models: &[(u16, u16)]) -> Vec<u16> {
    let mut regs = MARKER.to_vec();
    for &(id, len) in models {
        regs.extend([id, len]);
        regs.extend(std::iter::repeat_n(0, usize::from(len)));
    }
    regs.extend([END_MODEL, 0]);
    regs
}

fn ids(map: &ModelMap) -> Vec<(u16, u16, u16)> {
    map.models
        .iter()
        .map(|m| (m.id, m.address, m.length))
        .collect()
}

#[test]
fn the_standard_layout_is_walked() {
    let map = walk_image(40000, &image(&[(1, 66), (802, 62), (803, 58)])).unwrap();
    assert_eq!(
        ids(&map),
        vec![(1, 40002, 66), (802, 40070, 62), (803, 40134, 58)]
    );
    let models = battery_models(&map).unwrap();
    assert_eq!(models.battery.body(), 40072);
    assert_eq!(models.bank.map(|m| m.address), Some(40134));
    assert_eq!(models.module, None);
}

#[test]
fn a_common_model_of_65_moves_everything_after_it() {
    let map = walk_image(0, &image(&[(1, 65), (802, 62)])).unwrap();
    assert_eq!(ids(&map), vec![(1, 2, 65), (802, 69, 62)]);
    assert_eq!(battery_models(&map).unwrap().bank, None);
}

#[test]
fn a_vendor_model_before_802_is_skipped() {
    let map = walk_image(50000, &image(&[(1, 66), (64900, 10), (802, 62), (804, 40)])).unwrap();
    let models = battery_models(&map).unwrap();
    assert_eq!(models.battery.address, 50000 + 2 + 68 + 12);
    assert_eq!(models.module.map(|m| m.length), Some(40));
}

#[test]
fn errors_are_told_apart() {
    assert_eq!(
        walk_image(40000, &[0, 0, 1, 0]),
        Err(DiscoveryError::NoMarker(vec![40000]))
    );
    assert_eq!(walk_image(0, &[]), Err(DiscoveryError::NoMarker(vec![0])));
    let map = walk_image(0, &image(&[(1, 66), (803, 26)])).unwrap();
    assert_eq!(
        battery_models(&map),
        Err(DiscoveryError::NoBatteryModel(vec![1, 803]))
    );
    // A length past the end of the image.
    let mut regs = image(&[(1, 66), (802, 62)]);
    regs[3] = 200;
    assert_eq!(
        walk_image(0, &regs),
        Err(DiscoveryError::ChainBroken {
            id: 1,
            address: 2,
            length: 200
        })
    );
    // A length past the address space.
    let mut walk = ChainWalk::new(40000);
    assert_eq!(
        walk.push_header(1, 0xFFF0),
        Err(DiscoveryError::ChainBroken {
            id: 1,
            address: 40002,
            length: 0xFFF0
        })
    );
    // No end marker, ever.
    let mut walk = ChainWalk::new(0);
    let mut result = Ok(Step::Next(0));
    for _ in 0..=MAX_MODELS {
        result = walk.push_header(7, 0);
    }
    assert_eq!(result, Err(DiscoveryError::TooLong));
}

#[test]
fn an_empty_chain_has_no_battery() {
    let map = walk_image(0, &image(&[])).unwrap();
    assert!(map.models.is_empty());
    assert_eq!(
        battery_models(&map),
        Err(DiscoveryError::NoBatteryModel(vec![]))
    );
}

proptest! {
    #[test]
    fn arbitrary_images_never_panic(
        base in any::<u16>(),
        regs in proptest::collection::vec(any::<u16>(), 0..300),
        marker in any::<bool>(),
    ) {
        let mut regs = regs;
        if marker && regs.len() >= 2 {
            regs[..2].copy_from_slice(&MARKER);
        }
        if let Ok(map) = walk_image(base, &regs) {
            let _ = battery_models(&map);
        }
    }

    #[test]
    fn random_chains_are_walked_exactly(
        lengths in proptest::collection::vec((1u16..64000, 0u16..200), 0..20),
        base in prop::sample::select(DEFAULT_BASES.to_vec()),
    ) {
        let models: Vec<(u16, u16)> = lengths;
        let regs = image(&models);
        prop_assume!(usize::from(base) + regs.len() < 0xFFFF);
        let map = walk_image(base, &regs).unwrap();
        let mut address = base + 2;
        prop_assert_eq!(map.models.len(), models.len());
        for (entry, &(id, length)) in map.models.iter().zip(&models) {
            prop_assert_eq!(*entry, ModelEntry { id, address, length });
            address += 2 + length;
        }
        // Cut anywhere inside the chain: refused, never misread.
        let cut = regs.len().saturating_sub(3);
        if cut > 2 {
            prop_assert!(walk_image(base, &regs[..cut]).is_err());
        }
    }
}
