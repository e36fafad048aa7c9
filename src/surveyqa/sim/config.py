"""What a simulated survey looks like: sizes, seeds and the defects to inject.

Kept apart from the generator so that the truth manifest, the CLI and the tests all speak of the
same small typed objects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["SimConfig", "DefectConfig", "BANDS", "INSTRUMENT", "SKYMAP"]

#: Bands the simulation knows, with (zero point [mag for 1 count], extinction [mag/airmass],
#: sky [mag/arcsec^2], 5-sigma depth for 30 s in 0.7 arcsec seeing [mag], median seeing [arcsec]).
BANDS: dict[str, tuple[float, float, float, float, float]] = {
    "u": (30.5, 0.45, 22.9, 23.9, 0.95),
    "g": (32.0, 0.20, 22.3, 24.8, 0.90),
    "r": (31.8, 0.12, 21.2, 24.4, 0.85),
    "i": (31.6, 0.09, 20.5, 24.0, 0.80),
    "z": (31.2, 0.07, 19.6, 23.4, 0.78),
    "y": (30.3, 0.17, 18.6, 22.6, 0.78),
}

INSTRUMENT = "SimCam"
SKYMAP = "surveyqa_sim"


@dataclass
class DefectConfig:
    """Which defects to inject; each one is recorded with its truth in the truth manifest.

    Attributes
    ----------
    bad_astrometry_detector : bool
        One detector is offset by ``astrometry_offset`` arcsec in RA in every visit.
    bad_zeropoint_visit : bool
        One visit is calibrated with a zero point wrong by ``zeropoint_offset`` mag.
    empty_region : bool
        A square region inside one patch has no coadd objects (a coadd failure, RTN-041 §4).
    nan_flux_column : bool
        The object table's ``{band}_psfFlux`` is NaN for one band (a bad calibration, as in DP0.2).
    outside_refcat : bool
        The reference catalog has a hole under two detectors of one visit: those detectors fail
        their reference match with "No reference objects supplied", as DP0.2's did.
    """

    bad_astrometry_detector: bool = False
    bad_zeropoint_visit: bool = False
    empty_region: bool = False
    nan_flux_column: bool = False
    outside_refcat: bool = False
    astrometry_offset: float = 0.2
    zeropoint_offset: float = 0.4
    empty_region_size: float = 0.08

    @classmethod
    def all_on(cls) -> "DefectConfig":
        """Every defect injected (what `surveyqa demo` uses)."""
        return cls(True, True, True, True, True)

    @classmethod
    def from_names(cls, names: list[str]) -> "DefectConfig":
        """Defects from their names (``all`` for every one)."""
        from surveyqa.errors import SurveyQAError

        config = cls()
        known = [k for k in asdict(config) if isinstance(getattr(config, k), bool)]
        for name in names:
            if name == "all":
                return cls.all_on()
            key = name.replace("-", "_")
            if key not in known:
                raise SurveyQAError(f"unknown defect {name!r}", f"choose from: all, {', '.join(known)}")
            setattr(config, key, True)
        return config

    def any(self) -> bool:
        return any(v for v in asdict(self).values() if isinstance(v, bool))


@dataclass
class SimConfig:
    """Size and randomness of a simulated survey.

    Attributes
    ----------
    seed : int
        Seed of every random draw: the same config gives the same repository contents.
    tracts : int
        Number of tracts (1 deg x 1 deg each, side by side along the equator).
    visits : int
        Visits per band per tract (4 cover a tract fully: one per quadrant).
    bands : tuple of str
        Bands observed.
    density : float
        Density of true objects brighter than 26.5 mag in r, per square degree.
    detectors_per_side : int
        The focal plane is a square of ``detectors_per_side**2`` detectors of 2048 x 2048 pixels.
    patches_per_side : int
        Patches per tract side.
    star_fraction : float
        Fraction of objects that are stars.
    defects : DefectConfig
        Defects to inject.
    """

    seed: int = 1
    tracts: int = 1
    visits: int = 4
    bands: tuple[str, ...] = ("g", "r", "i")
    density: float = 50000.0
    detectors_per_side: int = 3
    patches_per_side: int = 4
    star_fraction: float = 0.3
    defects: DefectConfig = field(default_factory=DefectConfig)

    # Geometry constants (degrees, pixels, arcsec).
    tract_size: float = 1.0
    first_tract: int = 100
    ra0: float = 60.0
    pixel_scale: float = 0.4
    detector_pixels: int = 2048
    exposure_time: float = 30.0
    refcat_limit: float = 21.0

    @property
    def detector_size(self) -> float:
        """Detector side in degrees."""
        return self.detector_pixels * self.pixel_scale / 3600.0

    @property
    def n_detectors(self) -> int:
        return self.detectors_per_side**2

    def validate(self) -> None:
        """Raise a `SurveyQAError` for a configuration the generator cannot honour."""
        from surveyqa.errors import SurveyQAError

        unknown = [b for b in self.bands if b not in BANDS]
        if unknown:
            raise SurveyQAError(f"unknown band(s) {unknown}", f"choose from {''.join(BANDS)}")
        if self.tracts < 1 or self.visits < 1 or not self.bands:
            raise SurveyQAError("tracts, visits and bands must be at least 1")
        if self.density <= 0:
            raise SurveyQAError("density must be positive", "objects per square degree, e.g. 50000")
        if not 0 < self.tract_size <= 2 * self.detectors_per_side * self.detector_size:
            raise SurveyQAError(f"tract size {self.tract_size} deg is not covered by 4 visits of a "
                                f"{self.detectors_per_side * self.detector_size:.3f} deg focal plane",
                                "use a smaller --tract-size or more --detectors")
        if self.defects.bad_zeropoint_visit and len(self.bands) * self.visits < 2:
            raise SurveyQAError("a bad-zero-point visit needs at least two visits")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bands"] = list(self.bands)
        return d
