"""Throwaway servers for the tracks that outgrow one machine: started on loopback, stopped after."""
