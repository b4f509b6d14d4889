"""A private MRML scene with the application, Colors and Markups logics registered (headless use)."""

from __future__ import annotations

from dataclasses import dataclass

import slicer


@dataclass
class HeadlessScene:
    """A ``vtkMRMLScene`` plus the logics that must stay alive while it is used."""

    scene: "slicer.vtkMRMLScene"
    application_logic: "slicer.vtkSlicerApplicationLogic"
    color_logic: "slicer.vtkMRMLColorLogic"
    markups_logic: "slicer.vtkSlicerMarkupsLogic"


def new_scene() -> HeadlessScene:
    """Create a scene the way Slicer sets one up for Markups (no Qt, no singletons).

    The Colors logic adds the default color tables that labelmap display nodes look up.
    """
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    color_logic = slicer.vtkMRMLColorLogic()
    color_logic.SetMRMLApplicationLogic(app_logic)
    color_logic.SetMRMLScene(scene)
    markups_logic = slicer.vtkSlicerMarkupsLogic()
    markups_logic.SetMRMLApplicationLogic(app_logic)
    markups_logic.SetMRMLScene(scene)
    return HeadlessScene(scene, app_logic, color_logic, markups_logic)
