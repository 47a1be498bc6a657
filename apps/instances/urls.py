from django.urls import path

from .views import charts, labels, pages

app_name = "instances"

urlpatterns = [
    path("launch/", pages.launch_redirect, name="launch-redirect"),
    path("orgs/<slug:slug>/instances/", pages.instance_list_page, name="list"),
    path("orgs/<slug:slug>/instances/new/", pages.launch_page, name="launch"),
    path("orgs/<slug:slug>/instances/<uuid:instance_id>/", pages.instance_detail_page, name="detail"),
    path("orgs/<slug:slug>/instances/<uuid:instance_id>/labels/", labels.instance_labels_view, name="labels"),
    path("orgs/<slug:slug>/instances/<uuid:instance_id>/stop/", pages.instance_stop_view, name="stop"),
    path("orgs/<slug:slug>/instances/<uuid:instance_id>/start/", pages.instance_start_view, name="start"),
    path("orgs/<slug:slug>/instances/<uuid:instance_id>/delete/", pages.instance_delete_view, name="delete"),
    path("orgs/<slug:slug>/instances/<uuid:instance_id>/open/", pages.notebook_open, name="open"),
    path("orgs/<slug:slug>/instances/<uuid:instance_id>/cost/", pages.instance_running_cost_view, name="running-cost"),
    path("orgs/<slug:slug>/instances/<uuid:instance_id>/usage/", charts.instance_usage_chart_view, name="usage-chart"),
]
